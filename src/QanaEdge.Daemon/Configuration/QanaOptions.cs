using System.ComponentModel.DataAnnotations;

namespace QanaEdge.Daemon.Configuration;

/// <summary>What to do with a capture once its result is stored.</summary>
public enum DonePolicy { Move, Delete }

/// <summary>Which inference engine to use; Auto picks Akida when a card and its native library are present.</summary>
public enum EnginePreference { Auto, Managed, Akida }

/// <summary>What an unsure view (top probability under a threshold) is averaged with.</summary>
public enum ViewFallback
{
    /// <summary>Four overlapping tiles, under the package's τ (DESIGN.md's fallback; about 2 % of images with the shipped model).</summary>
    Tiling,
    /// <summary>Its seven rotations and mirrors, under a top probability of 0.5 (about 18 % of images with the shipped
    /// model, 2.3× the runs on average; 0.8–2 points more top-1 and macro-F1 on our split: docs/experiments.md).</summary>
    Symmetries,
}

/// <summary>Power sensor kinds the daemon can read.</summary>
public enum PowerSensorKind { None, Ina219, Ina236, Hwmon }

/// <summary>The daemon's settings: section <c>Qana</c> (appsettings.json → env QANA__... → --Qana:Key=value).</summary>
public sealed class QanaOptions
{
    public const string Section = "Qana";

    /// <summary>Folder watched for captures (created when missing).</summary>
    [Required] public string Inbox { get; set; } = "";

    /// <summary>Folder for the LiteDB file, done/quarantine folders by default (created when missing).</summary>
    [Required] public string StateDir { get; set; } = "";

    /// <summary>
    /// Device id used in MQTT topics and result ids: letters, digits, '-' and '_' only. Empty (the default): derived
    /// from the machine id (<see cref="DeviceIdentity"/>), qana-dev where there is none.
    /// </summary>
    [RegularExpression("^[A-Za-z0-9_-]{1,64}$", ErrorMessage = "must be 1-64 characters of A-Z a-z 0-9 - _ (it becomes an MQTT topic level)")]
    public string DeviceId { get; set; } = "";

    /// <summary>Where <see cref="DeviceId"/> came from, for the start log (set by the loader; not a key: no public setter).</summary>
    public string DeviceIdSource { get; internal set; } = "configured";

    /// <summary>Model package path; empty: firmware-models/ via DefaultModel.Locate.</summary>
    public string? Model { get; set; }

    public EnginePreference Engine { get; set; } = EnginePreference.Auto;

    /// <summary>What an unsure view is averaged with; results say which ran (<c>tiled</c>, <c>symmetrized</c>).</summary>
    public ViewFallback Fallback { get; set; } = ViewFallback.Tiling;

    /// <summary>Move (to DoneDir) or Delete a capture after its result is stored.</summary>
    public DonePolicy Done { get; set; } = DonePolicy.Move;

    /// <summary>Default: StateDir/done.</summary>
    public string? DoneDir { get; set; }

    /// <summary>
    /// Free space kept on the disks of done/ and quarantine/ by deleting, oldest first, the captures in done/ (their
    /// results stay in the store), then the bytes of quarantined ones (their .reason stays), and last, on a disk still
    /// short, the reasons of those, so that neither folder can fill the disk and stop the store; 0 keeps every capture.
    /// </summary>
    [Range(0, 1L << 40)] public long MinFreeMegabytes { get; set; } = 256;

    /// <summary>
    /// Days a result stays in the store once stored, when it was delivered and no clinician labelled it (ResultPruning:
    /// deleted in a daily pass; an unsent or labelled result stays); 0 keeps every result.
    /// </summary>
    [Range(0, 36500)] public int KeepResultsDays { get; set; } = 365;

    /// <summary>Default: StateDir/quarantine. Rejected files go here with a .reason file beside them.</summary>
    public string? QuarantineDir { get; set; }

    /// <summary>Folder of trusted public keys (*.pub) that update packages must be signed by.</summary>
    public string TrustDir { get; set; } = "/etc/qanad/trust";

    /// <summary>Full inbox rescan period, so a missed file-system event never loses a capture.</summary>
    [Range(0.05, 3600)] public double RescanSeconds { get; set; } = 2;

    /// <summary>A file not renamed into place counts as complete once its size and time stamp are unchanged this long.</summary>
    [Range(10, 60000)] public int StableMilliseconds { get; set; } = 300;

    /// <summary>Files larger than this are quarantined without being read.</summary>
    [Range(1024, 1L << 30)] public long MaxFileBytes { get; set; } = 32L << 20;

    /// <summary>Classifier threads; 0: one per core.</summary>
    [Range(0, 64)] public int Workers { get; set; }

    /// <summary>Captures waiting for a worker; beyond this the watcher waits (backpressure).</summary>
    [Range(1, 100000)] public int QueueCapacity { get; set; } = 64;

    /// <summary>
    /// Bytes the queued captures and those in the workers' hands may hold together (CaptureQueue); a capture is always
    /// taken when nothing else is held, so this may be below MaxFileBytes (1: one capture at a time). 128 MiB: 25
    /// five-megabyte dermatoscope frames.
    /// </summary>
    [Range(1L, 1L << 34)] public long QueueBytes { get; set; } = 128L << 20;

    [Microsoft.Extensions.Options.ValidateObjectMembers] public MqttOptions Mqtt { get; set; } = new();
    [Microsoft.Extensions.Options.ValidateObjectMembers] public PowerOptions Power { get; set; } = new();
    [Microsoft.Extensions.Options.ValidateObjectMembers] public CameraOptions Camera { get; set; } = new();
    [Microsoft.Extensions.Options.ValidateObjectMembers] public AkidaOptions Akida { get; set; } = new();
    [Microsoft.Extensions.Options.ValidateObjectMembers] public LearningOptions Learning { get; set; } = new();
}

/// <summary>
/// The on-device readout learner: clinician labels teach the model's readout (DESIGN.md, incremental learning); a
/// learned readout is applied only when it gains on labelled cases it did not learn from and loses on none.
/// </summary>
public sealed class LearningOptions
{
    public bool Enabled { get; set; } = true;
    /// <summary>Labelled cases of the running backbone before the first attempt (half are learned from, half check).</summary>
    [Range(4, 1_000_000)] public int MinCases { get; set; } = 40;
    /// <summary>New labelled cases since the last attempt before the next one.</summary>
    [Range(1, 1_000_000)] public int NewCases { get; set; } = 20;
    /// <summary>Passes over the learned half.</summary>
    [Range(1, 10_000)] public int Epochs { get; set; } = 10;
    /// <summary>Adam step size on the head weights. Chosen on validation by <c>make learning-sim</c> (docs/daemon.md):
    /// the training pipeline's 1e-4 never moved a weight by one quantization step in ten passes over a clinic's few
    /// cases; 1e-2 kept readouts that lost on held-out data in two of four stream orders once the check kept lesions
    /// apart; 1e-3 lost top-1 or macro-F1 in none.</summary>
    [Range(1e-7, 1.0)] public double LearningRate { get; set; } = 1e-3;
    /// <summary>The device's learner signing key (role learner); created on first use when missing, with its public
    /// half beside it (.pub). Default: StateDir/learner.key.</summary>
    public string? KeyFile { get; set; }
}

public sealed class AkidaOptions
{
    /// <summary>The library implementing native/akida/qana_akida.h: a file name for the dynamic loader's search, or a path.</summary>
    [Required] public string Library { get; set; } = "libqana_akida.so";
    /// <summary>Where Akida device nodes (akida*) are looked for.</summary>
    [Required] public string DevDir { get; set; } = "/dev";
    /// <summary>After the card fails while classifying, when it is first tried again; each failed try doubles the wait, up to an hour.</summary>
    [Range(0.05, 3600)] public double RetrySeconds { get; set; } = 60;
}

public sealed class MqttOptions
{
    /// <summary>Broker host; empty: an embedded broker serves on 127.0.0.1:Port.</summary>
    public string? Host { get; set; }
    [Range(1, 65535)] public int Port { get; set; } = 1883;
    /// <summary>Default: qanad-{DeviceId}.</summary>
    public string? ClientId { get; set; }
    public string? Username { get; set; }
    public string? Password { get; set; }
    /// <summary>Use TLS (implied by CaFile or ClientCertificate).</summary>
    public bool Tls { get; set; }
    /// <summary>PEM file of the CA that signed the broker's certificate; empty: the system trust store.</summary>
    public string? CaFile { get; set; }
    /// <summary>PEM client certificate (with ClientKey) or a PKCS#12 file.</summary>
    public string? ClientCertificate { get; set; }
    public string? ClientKey { get; set; }
    [Range(1, 3600)] public int KeepAliveSeconds { get; set; } = 15;
    [Range(0.01, 3600)] public double ReconnectMinSeconds { get; set; } = 0.2;
    [Range(0.01, 3600)] public double ReconnectMaxSeconds { get; set; } = 10;
    /// <summary>QoS 1 publishes awaiting PUBACK at once; fewer when the broker announces a smaller Receive Maximum.</summary>
    [Range(1, 1000)] public int MaxInflight { get; set; } = 32;
    /// <summary>Bound on every broker round trip (CONNACK, SUBACK, PUBACK, PINGRESP); a PUBACK or PINGRESP later than this retires the connection.</summary>
    [Range(0.1, 600)] public double TimeoutSeconds { get; set; } = 10;
    /// <summary>
    /// After an inbound message could not be stored (a clinician label or an update package on a full disk), the session is renewed this
    /// many seconds later so that the broker sends the unacknowledged message again; it resends only on a new connection.
    /// </summary>
    [Range(0.1, 3600)] public double RedeliverSeconds { get; set; } = 30;
    /// <summary>
    /// An update package still being applied after this many seconds is logged as such; a stop waits this long for it
    /// at most, and 10 s at most (it is then not acknowledged, and the broker sends it again).
    /// </summary>
    [Range(1, 3600)] public double UpdateApplySeconds { get; set; } = 300;

    /// <summary>
    /// Refusals by the broker (a PUBACK with an error reason: not authorized, packet too large, quota exceeded ...; a
    /// message over its Maximum Packet Size) of one outbox entry before it is moved to the dead letters; between them the
    /// entry waits 1, 2, 4 ... s (at most 60 s). A connection that closed while the entry was the oldest in flight makes
    /// it wait the same way but never makes it a dead letter (a lost link looks the same).
    /// </summary>
    [Range(1, 1000)] public int MaxRefusals { get; set; } = 5;
}

public sealed class PowerOptions
{
    public PowerSensorKind Sensor { get; set; } = PowerSensorKind.None;
    [Range(0, 255)] public int I2cBus { get; set; } = 1;
    [Range(0x03, 0x77)] public int I2cAddress { get; set; } = 0x40;
    [Range(1e-6, 1000)] public double ShuntOhms { get; set; } = 0.1;
    [Range(1e-6, 1000)] public double MaxCurrentAmps { get; set; } = 3.2;
    /// <summary>hwmon chip name: ina226 or ina3221 (the driver's `name` attribute).</summary>
    public string HwmonChip { get; set; } = "ina226";
    [Range(1, 3)] public int HwmonChannel { get; set; } = 1;
    public string HwmonRoot { get; set; } = "/sys/class/hwmon";
    [Range(0.1, 10000)] public double SampleMilliseconds { get; set; } = 2;
    [Range(1, 100000)] public int IdleSamples { get; set; } = 200;
    /// <summary>
    /// The board's idle power in watts, measured on a quiet board: when set, the energy baseline, and none is learned
    /// at start. The learned one comes only from readings of a board at rest, so a sensor that answers only after the
    /// start's wait, on a backlog that never drains, left energy_mj null for the whole run.
    /// </summary>
    [Range(0, 10000)] public double? IdleWatts { get; set; }
    /// <summary>Period of the telemetry message on qana/{DeviceId}/power.</summary>
    [Range(0.1, 86400)] public double TelemetrySeconds { get; set; } = 10;
}

public sealed class CameraOptions
{
    public bool Enabled { get; set; }
    /// <summary>V4L2 device index: /dev/video{Device}.</summary>
    [Range(0, 63)] public int Device { get; set; }
    [Range(16, 8192)] public int Width { get; set; } = 640;
    [Range(16, 8192)] public int Height { get; set; } = 480;
    /// <summary>
    /// Frames dropped after stream-on before the one a capture keeps: the camera's auto-exposure only starts adjusting
    /// once frames flow (<see cref="QanaEdge.Devices.Camera.V4l2CameraSource"/>).
    /// </summary>
    [Range(0, 300)] public int WarmupFrames { get; set; } = QanaEdge.Devices.Camera.V4l2CameraSource.DefaultWarmupFrames;
    /// <summary>GPIO line of the capture button (active low); -1: no button.</summary>
    [Range(-1, 1023)] public int ButtonPin { get; set; } = -1;
    [Range(0, 10000)] public int DebounceMilliseconds { get; set; } = 50;
    /// <summary>
    /// A capture that has no frame after this long is a failed one: the V4L2 binding waits for a frame (VIDIOC_DQBUF)
    /// with no timeout, so a camera that stops streaming would otherwise hold the capture for ever.
    /// </summary>
    [Range(1, 600)] public int CaptureTimeoutSeconds { get; set; } = 10;
    /// <summary>
    /// Captures waiting in the inbox (written, not yet classified and moved) at which a capture trigger is refused: a
    /// flood of capture commands wrote one frame per command and could outrun classification until the disk was full.
    /// </summary>
    [Range(1, 100000)] public int MaxBacklog { get; set; } = 32;
}
