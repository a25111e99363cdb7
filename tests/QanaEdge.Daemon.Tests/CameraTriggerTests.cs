using System.Device.Gpio;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Iot.Device.Media;
using Microsoft.Extensions.Logging;
using QanaEdge.Daemon.Capture;
using QanaEdge.Daemon.Hosting;
using QanaEdge.Daemon.Tests.Devices;
using QanaEdge.Daemon.Tests.Infrastructure;
using QanaEdge.Devices.Camera;
using Serilog.Events;

namespace QanaEdge.Daemon.Tests;

/// <summary>
/// The camera capture triggers end to end: the daemon in-process with the real V4l2CameraSource on a V4L2 device
/// emulated at the Iot.Device.Media boundary, the real CaptureButton on an emulated GPIO driver, a real mosquitto,
/// real LiteDB and real HAM10000 JPEGs as what the camera sees.
/// </summary>
public sealed class CameraTriggerTests : IDisposable
{
    private const int ButtonPin = 17;
    private readonly MosquittoBroker _broker = new();
    private readonly string _root = TestEnv.TempDir("camera");
    private readonly EmulatedVideoDevice _device = new(new VideoConnectionSettings(0, (640, 480), VideoPixelFormat.MJPEG), VideoPixelFormat.MJPEG, VideoPixelFormat.YUYV);
    private readonly EmulatedGpioDriver _gpio = new();

    public void Dispose()
    {
        _device.Stalled = false; // a capture still waiting for a frame ends
        _broker.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private DaemonRunner Daemon(string deviceId) => new(_root, _broker.Port, deviceId,
        new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
        "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}");

    /// <summary>A press as a real contact makes it: down, bounce up, down again, release.</summary>
    private void PressButton()
    {
        _gpio.Drive(ButtonPin, PinValue.Low);
        _gpio.Drive(ButtonPin, PinValue.High);
        _gpio.Drive(ButtonPin, PinValue.Low);
        _gpio.Drive(ButtonPin, PinValue.High);
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static HashSet<string> ResultShas(ResultSubscriber sub) =>
        sub.Results.Values.Select(q => q.First().GetProperty("image_sha256").GetString()!).ToHashSet();

    private static JsonElement? LastStatus(ResultSubscriber sub, string deviceId) =>
        sub.Messages.Where(m => m.Topic == $"qana/{deviceId}/status").Select(m => JsonDocument.Parse(m.Payload).RootElement).LastOrDefault() is { ValueKind: JsonValueKind.Object } e ? e : null;

    [Fact]
    public async Task Button_press_and_capture_command_each_give_exactly_one_capture_and_one_result()
    {
        byte[][] scenes = TestEnv.RealImages(3, skip: 630).Select(File.ReadAllBytes).ToArray();
        // After each stream-on the camera's exposure settles over the first frames, which the daemon's default
        // Qana:Camera:WarmupFrames lets go by: none of them may become a capture.
        _device.SettlingFrames = TestEnv.RealImages(V4l2CameraSource.DefaultWarmupFrames, skip: 650).Select(File.ReadAllBytes).ToArray();
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcam/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devcam");
        await daemon.StartAsync();

        // 1. The button, bouncing.
        _device.Scene = scenes[0];
        PressButton();
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scenes[0])), TimeSpan.FromSeconds(60), "the button capture's result");
        // 2. The MQTT capture command (the link is up and subscribed: the first result came through it).
        _device.Scene = scenes[1];
        await sub.PublishAsync("qana/devcam/capture", Encoding.UTF8.GetBytes("{}"));
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scenes[1])), TimeSpan.FromSeconds(60), "the capture command's result");
        // 3. The button again.
        _device.Scene = scenes[2];
        PressButton();
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scenes[2])), TimeSpan.FromSeconds(60), "the second press's result");

        // One frame per trigger, each frame exactly the JPEG the camera encoded (the driver buffer's padding is cut
        // off, so the hash is the file's), one result each, published once.
        Assert.Equal(3, _device.Captures);
        Assert.Equal(scenes.Select(Sha).ToHashSet(), ResultShas(sub));
        Assert.All(sub.Results.Values, copies => Assert.Single(copies));
        Assert.Equal(3, daemon.Store!.ResultCount());
        Assert.Empty(daemon.Log.At(LogEventLevel.Error));
        Assert.Equal("ready", LastStatus(sub, "devcam")!.Value.GetProperty("camera").GetProperty("state").GetString());
        // Each frame went through the inbox as a file and is kept in the done folder like any capture, so the image a
        // result was made from is there to look at, and a kill before its result was stored would not have lost it.
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.DoneDir).Length == 3, TimeSpan.FromSeconds(10), "three frames in done/");
        string[] kept = Directory.GetFiles(daemon.DoneDir);
        Assert.All(kept, f => Assert.Matches(@"^camera-\d{8}T\d{9}Z-[0-9a-f]{12}\.jpg$", Path.GetFileName(f)));
        Assert.Equal(scenes.Select(Sha).ToHashSet(), kept.Select(f => Sha(File.ReadAllBytes(f))).ToHashSet());
        Assert.Empty(Directory.GetFiles(daemon.Inbox));
    }

    /// <summary>
    /// Another program's capture named like a frame is not taken for one: a slow-written camera-0001.jpg (not renamed
    /// in, its writer pausing halfway) is given the grace of a file not yet finished and classified once whole, and only
    /// a name that ends with the start of its bytes' SHA-256, as the daemon names its frames, gets the source "camera".
    /// Before, the name's prefix alone made a capture the camera's: the slow one was quarantined half-written.
    /// </summary>
    [Fact]
    public async Task Only_captures_named_and_hashed_as_the_daemons_frames_get_the_source_camera()
    {
        byte[] image = File.ReadAllBytes(TestEnv.RealImages(1, skip: 640)[0]);
        byte[] text = Encoding.ASCII.GetBytes("not an image, just text");
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamsrc/results");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamsrc", null, "--Qana:StableMilliseconds=100");
        await daemon.StartAsync();

        string own = $"{CameraTrigger.FilePrefix}20260101T000000000Z-{Sha(text)[..12]}.jpg";
        TestEnv.DropBytes(text, daemon.Inbox, own);
        await using (var writer = new FileStream(Path.Combine(daemon.Inbox, "camera-0001.jpg"), FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite))
        {
            writer.Write(image, 0, image.Length / 2);
            writer.Flush();
            await TestEnv.WaitUntil(() => daemon.Log.Events.Any(e => e.Message.StartsWith("camera-0001.jpg looks unfinished", StringComparison.Ordinal)),
                TimeSpan.FromSeconds(30), "the half file to be taken for unfinished");
            writer.Write(image, image.Length / 2, image.Length - image.Length / 2);
        }

        await TestEnv.WaitUntil(() => sub.Results.Count == 1 && Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(60), "the finished image's result and an empty inbox");
        Assert.Equal(Sha(image), ResultShas(sub).Single());
        Assert.Equal([own, own + CaptureDisposition.ReasonSuffix], Directory.GetFiles(daemon.QuarantineDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Contains("\nsource: camera\n", File.ReadAllText(Path.Combine(daemon.QuarantineDir, own + CaptureDisposition.ReasonSuffix)));
    }

    /// <summary>
    /// At start the daemon removes the temporary files of its own frames that a kill cut off (.qanad-camera-....tmp), and
    /// only those: another program's camera-0001.jpg.tmp is its capture on its way. Before, every camera-*.tmp went.
    /// </summary>
    [Fact]
    public void Only_the_daemons_own_frame_temporaries_are_removed_at_start()
    {
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var disposition = new CaptureDisposition(new QanaEdge.Daemon.Configuration.QanaOptions { Inbox = inbox, StateDir = _root },
            Microsoft.Extensions.Logging.Abstractions.NullLogger<CaptureDisposition>.Instance);
        string others = Path.Combine(inbox, "camera-0001.jpg.tmp"), own = Path.Combine(inbox, $"{CameraTrigger.TemporaryPrefix}20260101T000000000Z-0123456789ab.jpg.tmp");
        File.WriteAllBytes(others, [1, 2, 3]);
        File.WriteAllBytes(own, [4, 5]);

        disposition.RecoverClaims();

        Assert.Equal([others], Directory.GetFiles(inbox));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(others));
    }

    [Fact]
    public async Task A_failing_camera_is_logged_and_reported_in_the_status_and_the_daemon_keeps_working()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 640)[0]);
        string inboxImage = TestEnv.RealImages(1, skip: 641)[0];
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamf/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devcamf");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamf") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status (link up and subscribed)");

        // The USB camera is unplugged; a capture command arrives.
        _device.Unplugged = true;
        await sub.PublishAsync("qana/devcamf/capture", Encoding.UTF8.GetBytes("{}"));
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamf")?.GetProperty("camera").GetProperty("state").GetString() == "failed",
            TimeSpan.FromSeconds(30), "a status saying the camera failed");
        JsonElement camera = LastStatus(sub, "devcamf")!.Value.GetProperty("camera");
        Assert.Contains("/dev/video0", camera.GetProperty("error").GetString());
        string error = Assert.Single(daemon.Log.At(LogEventLevel.Error));
        Assert.Contains("Camera capture (mqtt) failed", error);
        Assert.Contains("Can not open video device file '/dev/video0'", error);
        Assert.Equal("online", LastStatus(sub, "devcamf")!.Value.GetProperty("state").GetString());

        // The daemon did not go down with it: the inbox still works ...
        TestEnv.Drop(inboxImage, daemon.Inbox);
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(File.ReadAllBytes(inboxImage))), TimeSpan.FromSeconds(60), "the inbox image's result");
        // ... and once the camera is back, the button works and the status says so.
        _device.Unplugged = false;
        _device.Scene = scene;
        PressButton();
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scene)), TimeSpan.FromSeconds(60), "the camera result after replugging");
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamf")?.GetProperty("camera").GetProperty("state").GetString() == "ready",
            TimeSpan.FromSeconds(30), "a status saying the camera is ready again");
        Assert.Equal(1, _device.Captures); // the failed attempt never got a frame
        Assert.Equal(2, daemon.Store!.ResultCount());
    }

    /// <summary>
    /// The button's GPIO line is held by another process: the camera is reported unavailable, and the video device and
    /// the GPIO chip it had already opened are closed again rather than held until the process ends.
    /// </summary>
    [Fact]
    public async Task A_button_line_that_cannot_be_requested_closes_the_camera_and_the_gpio_chip()
    {
        _gpio.Busy.Add(ButtonPin);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamb/#");
        await sub.ConnectAsync();
        await using var daemon = Daemon("devcamb");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamb") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status");

        JsonElement camera = LastStatus(sub, "devcamb")!.Value.GetProperty("camera");
        Assert.Equal("unavailable", camera.GetProperty("state").GetString());
        Assert.Contains("Error 16", camera.GetProperty("error").GetString());
        Assert.False(_device.IsOpen, "the video device stayed open");
        Assert.True(_gpio.Disposed, "the GPIO chip stayed open");
    }

    /// <summary>
    /// The camera stops streaming in the middle of a capture: the binding's VIDIOC_DQBUF blocks with no timeout, and the
    /// capture used to wait for ever with the status saying "ready" and every later trigger dropped as "a capture is
    /// running". After Qana:Camera:CaptureTimeoutSeconds the capture is a failed one (log and status say so); a frame
    /// that comes after that is not what was in front of the lens when the trigger came, and is dropped.
    /// </summary>
    [Fact]
    public async Task A_camera_that_stops_streaming_fails_the_capture_after_the_timeout_and_its_late_frame_is_dropped()
    {
        byte[] late = File.ReadAllBytes(TestEnv.RealImages(1, skip: 646)[0]);
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 647)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamstall/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamstall",
            new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
            "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}", "--Qana:Camera:CaptureTimeoutSeconds=1");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamstall") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status");

        _device.Stalled = true;
        _device.Scene = late;
        await sub.PublishAsync("qana/devcamstall/capture", Encoding.UTF8.GetBytes("{}"));
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamstall")?.GetProperty("camera").GetProperty("state").GetString() == "failed",
            TimeSpan.FromSeconds(30), "a status saying the capture failed");
        Assert.Contains("no frame within 1 s", LastStatus(sub, "devcamstall")!.Value.GetProperty("camera").GetProperty("error").GetString());
        Assert.Contains("Camera capture (mqtt) failed", Assert.Single(daemon.Log.At(LogEventLevel.Error)));

        // Streaming resumes: the stuck capture gets its frame, too late to be the one asked for.
        _device.Stalled = false;
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamstall")?.GetProperty("camera").GetProperty("state").GetString() == "ready",
            TimeSpan.FromSeconds(30), "a status saying the camera is ready again");
        _device.Scene = scene;
        // The status goes out before the trigger lets go of the capture it ends, and a press in between is dropped as
        // "a capture is running": press until the device starts the next capture.
        int streams = _device.Captures;
        await TestEnv.WaitUntil(() => { if (_device.Captures == streams) PressButton(); return ResultShas(sub).Contains(Sha(scene)); },
            TimeSpan.FromSeconds(60), "the next press's result");
        Assert.DoesNotContain(Sha(late), ResultShas(sub));
        Assert.Equal(1, daemon.Store!.ResultCount());
    }

    /// <summary>
    /// The daemon stops while a capture is streaming. Closing the camera under the binding's capture loop made every
    /// following VIDIOC_DQBUF fail unnoticed and hand over buffer 0 again, which held a warm-up frame: that frame, too
    /// dark or too bright, was written into the inbox as the capture. The capture now ends before the camera is closed.
    /// </summary>
    [Fact]
    public async Task Stopping_during_a_capture_lets_it_finish_before_the_camera_is_closed()
    {
        byte[][] settling = TestEnv.RealImages(V4l2CameraSource.DefaultWarmupFrames, skip: 650).Select(File.ReadAllBytes).ToArray();
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 648)[0]);
        _device.SettlingFrames = settling;
        _device.Scene = scene;
        _device.FrameInterval = TimeSpan.FromMilliseconds(400);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamstop/#");
        await sub.ConnectAsync();
        var daemon = Daemon("devcamstop");
        await using (daemon)
        {
            await daemon.StartAsync();
            PressButton();
            await TestEnv.WaitUntil(() => _device.Ioctls.Contains("DQBUF 0"), TimeSpan.FromSeconds(30), "the first frame of the capture");
        } // stopped, a warm-up frame or two into the capture

        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox, "camera-*.jpg").Length > 0, TimeSpan.FromSeconds(10), "the capture's frame");
        string frame = Assert.Single(Directory.GetFiles(daemon.Inbox, "camera-*.jpg"));
        Assert.Equal(Sha(scene), Sha(File.ReadAllBytes(frame)));
        Assert.DoesNotContain("DQBUF EBADF", _device.Ioctls);
    }

    /// <summary>
    /// The inbox on a real file system that is full: the frame cannot be written, which is a failed capture (status and
    /// log say why) and leaves no half-written file behind; once there is room the next press gives a result.
    /// </summary>
    [SmallFileSystemFact]
    public async Task A_frame_that_cannot_be_written_to_a_full_inbox_is_a_failed_capture_and_leaves_nothing_behind()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 645)[0]);
        using var disk = new SmallFileSystem(megabytes: 1);
        string inbox = Path.Combine(disk.Root, "inbox");
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamfull/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamfull",
            new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
            "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}", $"--Qana:Inbox={inbox}");
        await daemon.StartAsync();
        string filler = disk.Fill();

        _device.Scene = scene;
        PressButton();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamfull")?.GetProperty("camera").GetProperty("state").GetString() == "failed",
            TimeSpan.FromSeconds(30), "a status saying the capture failed");
        Assert.Contains("No space left on device", LastStatus(sub, "devcamfull")!.Value.GetProperty("camera").GetProperty("error").GetString());
        Assert.Empty(Directory.GetFiles(inbox));

        File.Delete(filler);
        // The "failed" status goes out before the trigger lets go of the failed capture, and a press in between is
        // dropped as "a capture is running": press until the device starts the next capture.
        int streams = _device.Captures;
        await TestEnv.WaitUntil(() => { if (_device.Captures == streams) PressButton(); return ResultShas(sub).Contains(Sha(scene)); },
            TimeSpan.FromSeconds(60), "the result once there is room");
        // The trigger reports the camera ready only after the frame is in the inbox, where its result may be made first.
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamfull")?.GetProperty("camera").GetProperty("state").GetString() == "ready",
            TimeSpan.FromSeconds(30), "a status saying the camera is ready again");
        Assert.Equal("ready", LastStatus(sub, "devcamfull")!.Value.GetProperty("camera").GetProperty("state").GetString());
    }

    /// <summary>
    /// A frame renamed into the inbox whose folder cannot then be flushed is whole under its name, and the watcher may
    /// take it at once: it is a capture. Before, the trigger reported it failed (error line, "failed" status) while it
    /// was classified all the same; now it is reported captured, with a warning that says what the flush risks.
    /// </summary>
    [Fact]
    public async Task A_frame_whose_inbox_cannot_be_flushed_is_reported_captured_with_a_warning()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 648)[0]);
        string inbox = Directory.CreateDirectory(Path.Combine(_root, "inbox")).FullName;
        var log = new RecordingLogger<CameraTrigger>();
        using var source = new V4l2CameraSource(_device, 0);
        using var trigger = new CameraTrigger(source, null, inbox, log, syncFolder: folder => throw new IOException($"fsync of {folder} failed: errno 5"));
        _device.Scene = scene;

        Assert.True(await trigger.TriggerAsync("test"));

        Assert.Equal(scene, File.ReadAllBytes(Assert.Single(Directory.GetFiles(inbox))));
        Assert.Equal(("ready", null), (trigger.State.State, trigger.State.Error));
        var (level, line) = Assert.Single(log.Lines);
        Assert.Equal(LogLevel.Warning, level);
        Assert.Contains("but the inbox could not be flushed: a power cut before its result is stored may lose it (fsync of", line);
    }

    /// <summary>
    /// A retained capture command (left on the broker by mistake, or by a tool that retains everything) must not fire
    /// when the device connects, nor again at every reconnect; a live command still does.
    /// </summary>
    [Fact]
    public async Task A_retained_capture_command_does_not_fire_on_connect_and_a_live_one_does()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 646)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamr/#");
        await sub.ConnectAsync();
        await sub.PublishAsync("qana/devcamr/capture", Encoding.UTF8.GetBytes("{}"), retain: true);
        _device.Scene = scene;
        await using var daemon = Daemon("devcamr");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamr") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status (link up and subscribed)");

        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Equal(0, _device.Captures); // before, the retained command took a picture at once

        await sub.PublishAsync("qana/devcamr/capture", Encoding.UTF8.GetBytes("{}"));
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scene)), TimeSpan.FromSeconds(60), "the live command's result");
        Assert.Equal(1, _device.Captures);
    }

    /// <summary>A clinician label for a result this device never made: stored all the same, so it marks, once stored,
    /// that every message the test published before it on the same connection has been handled.</summary>
    private static async Task MarkHandledAsync(ResultSubscriber sub, DaemonRunner daemon)
    {
        int before = daemon.Store!.FeedbackCount();
        await sub.PublishAsync($"qana/{daemon.DeviceId}/feedback", Encoding.UTF8.GetBytes($"{{\"result_id\":\"mark{before}\",\"label\":\"nv\"}}"));
        await TestEnv.WaitUntil(() => daemon.Store!.FeedbackCount() == before + 1, TimeSpan.FromSeconds(30), "the marker label to be stored");
    }

    private static int LinesWith(DaemonRunner daemon, LogEventLevel level, string text) => daemon.Log.At(level).Count(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>
    /// A flood of capture commands while captures wait in the inbox unclassified: every command used to write one more
    /// frame into the inbox, faster than the classifier took them, for as long as the flood lasted. At
    /// Qana:Camera:MaxBacklog waiting captures a trigger is refused, with a warning at the 1st, 10th, 100th ... refusal,
    /// and accepted again once the backlog has drained.
    /// </summary>
    [Fact]
    public async Task A_flood_of_capture_commands_is_refused_while_the_inbox_backlog_is_at_its_limit()
    {
        string[] waiting = TestEnv.RealImages(3, skip: 660);
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 663)[0]);
        _device.Scene = scene;
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamflood/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamflood",
            new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
            "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}", "--Qana:Camera:MaxBacklog=3");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamflood") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status (link up and subscribed)");

        // Classification lags: the workers are held, and three captures wait in the inbox.
        using var held = HeldWorkers.Hold(daemon);
        foreach (string image in waiting) TestEnv.Drop(image, daemon.Inbox);
        for (int i = 0; i < 50; i++) await sub.PublishAsync("qana/devcamflood/capture", Encoding.UTF8.GetBytes("{}"));
        await MarkHandledAsync(sub, daemon);

        Assert.Equal(0, _device.Captures);
        Assert.Empty(Directory.GetFiles(daemon.Inbox, "camera-*"));
        string[] refused = daemon.Log.At(LogEventLevel.Warning).Where(l => l.Contains("Capture trigger (mqtt) refused", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, refused.Length); // the 1st and the 10th of 50, not 50 lines
        Assert.Contains("3 captures wait in the inbox, Qana:Camera:MaxBacklog is 3 (1 in a row", refused[0]);
        Assert.Contains("(10 in a row", refused[1]);

        // The backlog drains; the next command is taken.
        await held.ReleaseAsync();
        await TestEnv.WaitUntil(() => Directory.GetFiles(daemon.Inbox).Length == 0, TimeSpan.FromSeconds(60), "the waiting captures to be classified and moved");
        await sub.PublishAsync("qana/devcamflood/capture", Encoding.UTF8.GetBytes("{}"));
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scene)), TimeSpan.FromSeconds(60), "the capture's result once the backlog drained");
        Assert.Equal(1, _device.Captures);
        Assert.Equal(1, LinesWith(daemon, LogEventLevel.Warning, "Capture triggers accepted again: 0 captures wait in the inbox, below Qana:Camera:MaxBacklog 3, after 50 refused"));
        Assert.Equal(waiting.Select(f => Sha(File.ReadAllBytes(f))).Append(Sha(scene)).ToHashSet(), ResultShas(sub));
    }

    /// <summary>
    /// Capture commands that arrive while a capture runs are dropped (one trigger, one image); each used to log a line,
    /// so a flood wrote as many lines as it had commands. They are logged at the 1st, 10th, 100th ... of a run, and the
    /// run's count once a capture goes by with none dropped.
    /// </summary>
    [Fact]
    public async Task Capture_commands_dropped_while_a_capture_runs_are_logged_at_1_10_100()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 664)[0]);
        byte[] next = File.ReadAllBytes(TestEnv.RealImages(1, skip: 665)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamdrop/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamdrop",
            new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
            "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}", "--Qana:Camera:CaptureTimeoutSeconds=600");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devcamdrop") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status (link up and subscribed)");

        // The first command starts a capture that waits for its frame; the 49 behind it find it running.
        _device.Stalled = true;
        _device.Scene = scene;
        for (int i = 0; i < 50; i++) await sub.PublishAsync("qana/devcamdrop/capture", Encoding.UTF8.GetBytes("{}"));
        await MarkHandledAsync(sub, daemon);
        string[] dropped = daemon.Log.At(LogEventLevel.Information).Where(l => l.Contains("Capture trigger (mqtt) ignored: a capture is running", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, dropped.Length); // the 1st and the 10th of 49, not 49 lines
        Assert.Contains("(1 in a row", dropped[0]);
        Assert.Contains("(10 in a row", dropped[1]);

        _device.Stalled = false;
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(scene)), TimeSpan.FromSeconds(60), "the one capture's result");
        // A capture with none dropped ends the run and says how long it was.
        _device.Scene = next;
        PressButton();
        await TestEnv.WaitUntil(() => ResultShas(sub).Contains(Sha(next)), TimeSpan.FromSeconds(60), "the next press's result");
        await TestEnv.WaitUntil(() => LinesWith(daemon, LogEventLevel.Information, "49 capture triggers were ignored while captures ran") == 1,
            TimeSpan.FromSeconds(10), "the run's count");
        Assert.Equal(2, _device.Captures);
        Assert.Equal(2, daemon.Log.At(LogEventLevel.Information).Count(l => l.Contains("ignored: a capture is running", StringComparison.Ordinal)));
    }

    /// <summary>
    /// Capture commands to a device without a camera are ignored; each used to log a warning, so a flood of them wrote
    /// the journal as fast as it came, for as long as it lasted. The 1st, 10th, 100th ... are logged.
    /// </summary>
    [Fact]
    public async Task Capture_commands_without_a_camera_are_logged_at_1_10_100()
    {
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devnocam/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devnocam");
        await daemon.StartAsync();
        await TestEnv.WaitUntil(() => LastStatus(sub, "devnocam") is { } s && s.GetProperty("state").GetString() == "online",
            TimeSpan.FromSeconds(30), "the online status (link up and subscribed)");

        for (int i = 0; i < 50; i++) await sub.PublishAsync("qana/devnocam/capture", Encoding.UTF8.GetBytes("{}"));
        await MarkHandledAsync(sub, daemon);
        string[] ignored = daemon.Log.At(LogEventLevel.Warning).Where(l => l.Contains("Capture command on qana/devnocam/capture ignored: no camera", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, ignored.Length); // the 1st and the 10th of 50, not 50 lines
        Assert.Contains("(1 so far", ignored[0]);
        Assert.Contains("(10 so far", ignored[1]);
        Assert.Equal(0, _device.Captures);
    }

    /// <summary>
    /// A camera that is gone fails each capture at once, so every trigger of a flood got through to fail and logged an
    /// error. Failed captures in a row are logged at the 1st, 10th, 100th ..., and once when a capture works again.
    /// </summary>
    [Fact]
    public async Task Captures_failing_in_a_row_are_logged_at_1_10_100()
    {
        byte[] scene = File.ReadAllBytes(TestEnv.RealImages(1, skip: 666)[0]);
        await using var sub = new ResultSubscriber(_broker.Port, "qana/devcamgone/#");
        await sub.ConnectAsync();
        await using var daemon = new DaemonRunner(_root, _broker.Port, "devcamgone",
            new DaemonHooks { CameraFactory = o => new V4l2CameraSource(_device, o.WarmupFrames), GpioFactory = () => new GpioController(_gpio) },
            "--Qana:Camera:Enabled=true", $"--Qana:Camera:ButtonPin={ButtonPin}");
        await daemon.StartAsync();

        // At least twelve captures, each one failing. A press that comes while the last failure is still being reported is
        // dropped as "a capture is running", so each is pressed until the device sees it (rarely, a second press gets
        // through as well: the counts below are the device's).
        _device.Unplugged = true;
        for (int k = 1; k <= 12; k++)
            await TestEnv.WaitUntil(() => { if (_device.UnpluggedOpens < k) PressButton(); return _device.UnpluggedOpens >= k; }, TimeSpan.FromSeconds(30), $"failed capture {k}");
        // The camera comes back; once its capture gives a result, every failure before it has been reported.
        _device.Unplugged = false;
        _device.Scene = scene;
        await TestEnv.WaitUntil(() => { if (_device.Captures == 0) PressButton(); return ResultShas(sub).Contains(Sha(scene)); }, TimeSpan.FromSeconds(60), "the result once the camera is back");
        // The end of the run is logged after the frame is in the inbox, where its result may be made first.
        await TestEnv.WaitUntil(() => daemon.Log.At(LogEventLevel.Information).Any(l => l.Contains("captured again after", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(10), "the end of the run of failed captures in the log");

        int failures = _device.UnpluggedOpens;
        string[] failed = daemon.Log.At(LogEventLevel.Error).ToArray();
        Assert.Equal(Enumerable.Range(1, failures).Count(k => Logging.IsReported(k)), failed.Length); // the 1st and the 10th of 12, not 12 lines
        Assert.Contains("Camera capture (button) failed (1 in a row", failed[0]);
        Assert.Contains("Can not open video device file '/dev/video0'", failed[0]);
        Assert.Contains("(10 in a row", failed[1]);
        Assert.Equal(1, LinesWith(daemon, LogEventLevel.Information, $"captured again after {failures} failed captures"));
    }
}
