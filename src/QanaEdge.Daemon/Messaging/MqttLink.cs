using System.Buffers;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using QanaEdge.Daemon.Configuration;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// The one MQTT connection of the daemon. A background loop connects, and reconnects with exponential backoff
/// (ReconnectMinSeconds doubling to ReconnectMaxSeconds, with jitter) whenever the link drops; on each connect it
/// subscribes to the inbound topics and publishes the retained "online" status. The will makes the broker publish a
/// retained "offline" status when the link dies without a clean disconnect. Publishing is thread-safe
/// (MQTTnet allows concurrent PublishAsync); connect and disconnect run only on the loop.
/// </summary>
public sealed class MqttLink : IAsyncDisposable
{
    private readonly MqttOptions _options;
    private readonly Topics _topics;
    private readonly string _deviceId;
    private readonly ILogger<MqttLink> _log;
    private readonly IMqttClient _client;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private volatile TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte[] _onlineStatus = [];

    public MqttLink(MqttOptions options, string deviceId, ILogger<MqttLink> log)
    {
        _options = options;
        _deviceId = deviceId;
        _topics = new Topics(deviceId);
        _log = log;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.DisconnectedAsync += e =>
        {
            if (_connected.Task.IsCompleted) _connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (e.ClientWasConnected)
                _log.LogWarning("MQTT link to {Host}:{Port} lost ({Reason}); results queue in the outbox", Host, _options.Port, e.Reason);
            _wake.Release();
            return Task.CompletedTask;
        };
        _client.ApplicationMessageReceivedAsync += e =>
        {
            MessageReceived?.Invoke(e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray());
            return Task.CompletedTask;
        };
    }

    public string Host => string.IsNullOrWhiteSpace(_options.Host) ? "127.0.0.1" : _options.Host;

    public bool IsConnected => _client.IsConnected;

    /// <summary>Inbound message on a subscribed topic (topic, payload); runs on the MQTT receive path: keep it short.</summary>
    public event Action<string, byte[]>? MessageReceived;

    /// <summary>Raised after every (re)connection, once status and subscriptions are in place.</summary>
    public event Action? Connected;

    /// <summary>Sets the retained status sent on each connect and starts the connect loop. Does not wait for the broker.</summary>
    public void Start(byte[] onlineStatus)
    {
        _onlineStatus = onlineStatus;
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    /// <summary>Completes when the link is up (or the token fires).</summary>
    public Task WaitConnectedAsync(CancellationToken ct) => _connected.Task.WaitAsync(ct);

    /// <summary>Publishes with QoS 1 and returns once the PUBACK arrives. Throws when the link is down or the broker refuses.</summary>
    public async Task PublishAsync(string topic, byte[] payload, bool retain, CancellationToken ct)
    {
        MqttApplicationMessage message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain)
            .WithContentType("application/json")
            .Build();
        MqttClientPublishResult result = await _client.PublishAsync(message, ct).ConfigureAwait(false);
        if (result.ReasonCode is not (MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers))
            throw new MqttPublishRefusedException($"broker refused the publish on {topic}: {result.ReasonCode} {result.ReasonString}");
    }

    private MqttClientOptions BuildOptions()
    {
        byte[] will = Payloads.Status("offline", _deviceId, null, null, null, null, null);
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(Host, _options.Port)
            .WithClientId(_options.ClientId)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            // A persistent session keeps our QoS 1 subscriptions (feedback, updates) queued while we are away.
            .WithCleanStart(false)
            .WithSessionExpiryInterval(7 * 24 * 3600)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(_options.KeepAliveSeconds))
            .WithTimeout(TimeSpan.FromSeconds(10))
            .WithWillTopic(_topics.Status)
            .WithWillPayload(will)
            .WithWillRetain(true)
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithWillContentType("application/json");
        if (!string.IsNullOrEmpty(_options.Username))
            builder.WithCredentials(_options.Username, _options.Password ?? "");
        if (_options.Tls || !string.IsNullOrEmpty(_options.CaFile) || !string.IsNullOrEmpty(_options.ClientCertificate))
            builder.WithTlsOptions(BuildTls);
        return builder.Build();
    }

    private void BuildTls(MqttClientTlsOptionsBuilder tls)
    {
        tls.UseTls(true).WithTargetHost(Host);
        if (!string.IsNullOrEmpty(_options.CaFile))
        {
            var chain = new X509Certificate2Collection();
            chain.ImportFromPemFile(_options.CaFile);
            tls.WithTrustChain(chain);
        }
        if (!string.IsNullOrEmpty(_options.ClientCertificate))
        {
            X509Certificate2 cert = string.IsNullOrEmpty(_options.ClientKey)
                ? X509CertificateLoader.LoadPkcs12FromFile(_options.ClientCertificate, _options.Password)
                : X509Certificate2.CreateFromPemFile(_options.ClientCertificate, _options.ClientKey);
            tls.WithClientCertificates([cert]);
        }
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        MqttClientOptions options = BuildOptions();
        TimeSpan min = TimeSpan.FromSeconds(_options.ReconnectMinSeconds), max = TimeSpan.FromSeconds(_options.ReconnectMaxSeconds);
        TimeSpan delay = min;
        int failures = 0;
        while (!ct.IsCancellationRequested)
        {
            if (!_client.IsConnected)
            {
                try
                {
                    await _client.ConnectAsync(options, ct).ConfigureAwait(false);
                    await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                        .WithTopicFilter(_topics.Feedback, MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter(_topics.Updates, MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter(Topics.FleetUpdates, MqttQualityOfServiceLevel.AtLeastOnce)
                        .WithTopicFilter(_topics.Capture, MqttQualityOfServiceLevel.AtLeastOnce)
                        .Build(), ct).ConfigureAwait(false);
                    await PublishAsync(_topics.Status, _onlineStatus, retain: true, ct).ConfigureAwait(false);
                    _log.LogInformation("MQTT link up: {Host}:{Port} as {ClientId} (after {Failures} failed attempts)", Host, _options.Port, _options.ClientId, failures);
                    delay = min; failures = 0;
                    _connected.TrySetResult();
                    Connected?.Invoke();
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
                catch (Exception e)
                {
                    failures++;
                    // Log the first failure and then every tenth so a long outage does not flood the journal.
                    if (failures == 1 || failures % 10 == 0)
                        _log.LogWarning("MQTT connect to {Host}:{Port} failed ({Failures}x): {Error}; retrying in {Delay} s", Host, _options.Port, failures, e.Message, Math.Round(delay.TotalSeconds, 2));
                    if (_client.IsConnected)
                    {
                        try { await _client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false); } catch (Exception) { }
                    }
                    TimeSpan jittered = delay * (0.8 + 0.4 * Random.Shared.NextDouble());
                    try { await Task.Delay(jittered, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
                    delay = TimeSpan.FromTicks(Math.Min(max.Ticks, delay.Ticks * 2));
                    continue;
                }
            }
            try { await _wake.WaitAsync(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
    }

    /// <summary>Publishes the retained "offline" status (a clean shutdown does not fire the will) and disconnects.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        if (_client.IsConnected)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await PublishAsync(_topics.Status, Payloads.Status("offline", _deviceId, null, null, null, null, null), retain: true, cts.Token).ConfigureAwait(false);
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _log.LogWarning("MQTT clean disconnect failed: {Error}", e.Message);
            }
        }
        _client.Dispose();
        _stop.Dispose();
    }
}

public sealed class MqttPublishRefusedException(string message) : Exception(message);
