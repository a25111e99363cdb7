using System.Buffers;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Exceptions;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Hosting;

namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// The one MQTT connection of the daemon. A background loop connects, and reconnects with exponential backoff
/// (ReconnectMinSeconds doubling to ReconnectMaxSeconds, with jitter) whenever the link drops; on each connect it
/// subscribes to the inbound topics and publishes the retained "online" status. The will makes the broker publish a
/// retained "offline" status when the link dies without a clean disconnect.
/// <para>
/// Every successful connection is a <see cref="LinkSession"/>, and only the loop creates or retires sessions.
/// MQTTnet raises its Disconnected event on a thread-pool task after the fact, so a late event of a failed attempt
/// can arrive after the next attempt succeeded: the event therefore only wakes the loop, which looks at the client's
/// real state. A session's <see cref="LinkSession.Lost"/> token cancels every request still waiting on that
/// connection, and every request is bounded by TimeoutSeconds: MQTTnet applies no timeout of its own when it is
/// given a cancellable token, and a PUBACK that never comes (broker frozen, half-open TCP) would otherwise be awaited
/// for ever.
/// </para>
/// <para>
/// The loop also keeps the connection alive: when nothing was sent for KeepAliveSeconds it pings, and a PINGRESP that
/// does not come within TimeoutSeconds retires the session, as a missing PUBACK does. MQTTnet's own keep-alive loop
/// is left off (see <see cref="KeepAliveAdapterFactory"/>); at rest the loop wakes once per keep-alive period.
/// </para>
/// Publishing is thread-safe (MQTTnet allows concurrent PublishAsync); connect and disconnect run only on the loop.
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
    private readonly Lock _state = new();
    private readonly TimeSpan _timeout;
    private Task? _loop;
    private LinkSession? _session;
    private TaskCompletionSource<LinkSession> _up = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _sessions;
    // Counts connect attempts: a message is acknowledged later only on the connection it came on (AcknowledgeAsync).
    private int _connection;
    private int _recycle;
    private int _redeliveryPending;
    // Stopwatch time of the last packet this link sent (a CONNECT, a publish or a ping): the keep-alive counts from it.
    private long _lastSent;
    private Func<byte[]> _onlineStatus = () => [];
    // Status publishes one at a time, each building the status when its turn comes, so the broker's retained status
    // is never an older one published last (a snapshot built outside, then published after a newer one, was).
    // _statusChanges counts changes asked for, _statusSentAt the count when the last status published was built.
    private readonly SemaphoreSlim _statusGate = new(1, 1);
    private int _statusChanges, _statusSentAt = -1;

    public MqttLink(MqttOptions options, string deviceId, ILogger<MqttLink> log)
    {
        _options = options;
        _deviceId = deviceId;
        _topics = new Topics(deviceId);
        _log = log;
        _timeout = TimeSpan.FromSeconds(options.TimeoutSeconds);
        _client = new MqttClientFactory().CreateMqttClient(new KeepAliveAdapterFactory((ushort)options.KeepAliveSeconds));
        _client.DisconnectedAsync += _ =>
        {
            // Possibly late (see the class comment): do not trust it to describe the current connection.
            Wake();
            return Task.CompletedTask;
        };
        _client.ApplicationMessageReceivedAsync += e =>
        {
            MessageReceived?.Invoke(new InboundMessage(e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray(), Volatile.Read(ref _connection), e));
            return Task.CompletedTask;
        };
    }

    public string Host => string.IsNullOrWhiteSpace(_options.Host) ? "127.0.0.1" : _options.Host;

    /// <summary>True while a session is up (the loop has connected, subscribed and sent the status, and not yet seen it drop).</summary>
    public bool IsConnected => _client.IsConnected && Current is { IsLost: false };

    /// <summary>The session currently up, or null.</summary>
    public LinkSession? Current { get { lock (_state) return _session; } }

    /// <summary>
    /// Inbound message on a subscribed topic; runs on MQTTnet's task that takes the inbound messages one after the
    /// other: keep it short. It is acknowledged (PUBACK) when the handler returns, and not when it throws, unless the
    /// handler took it over (<see cref="InboundMessage.Defer"/>) to acknowledge it later (<see cref="AcknowledgeAsync"/>).
    /// </summary>
    public event Action<InboundMessage>? MessageReceived;

    /// <summary>
    /// Sends the PUBACK of a message taken over by its handler (<see cref="InboundMessage.Defer"/>), when the connection
    /// it came on is still the one up, within TimeoutSeconds; false when it was not sent. A message whose connection
    /// dropped meanwhile is sent again by the broker (persistent session), under the same packet id: acknowledged on the
    /// new connection, the PUBACK could be taken for another message by then given that id.
    /// </summary>
    public async Task<bool> AcknowledgeAsync(InboundMessage message)
    {
        if (message.Connection != Volatile.Read(ref _connection) || !_client.IsConnected) return false;
        try
        {
            using var bounded = new CancellationTokenSource(_timeout);
            await message.Received.AcknowledgeAsync(bounded.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _log.LogDebug("MQTT PUBACK for a message on {Topic} not sent: {Error}; the broker sends it again", message.Topic, e.Message);
            return false;
        }
    }

    /// <summary>Raised after every (re)connection, once status and subscriptions are in place.</summary>
    public event Action? Connected;

    /// <summary>
    /// Sets how the retained status sent on each connect is built (called each time one is sent) and starts the
    /// connect loop. Does not wait for the broker.
    /// </summary>
    public void Start(Func<byte[]> onlineStatus)
    {
        _onlineStatus = onlineStatus;
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    /// <summary>
    /// Says the status changed: it is built and published now when the link is up; when it is not, the next connect
    /// sends it (every connect builds the status anew).
    /// </summary>
    public async Task UpdateStatusAsync(CancellationToken ct)
    {
        Interlocked.Increment(ref _statusChanges);
        if (Current is not { } session) return;
        await TryPublishLatestStatusAsync(session, ct).ConfigureAwait(false);
    }

    private async Task TryPublishLatestStatusAsync(LinkSession session, CancellationToken ct)
    {
        try { await PublishLatestStatusAsync(session, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is not OutOfMemoryException && !ct.IsCancellationRequested)
        {
            _log.LogDebug("Status update not sent now ({Error}); the next connect sends it", e.Message);
        }
    }

    private async Task PublishLatestStatusAsync(LinkSession session, CancellationToken ct)
    {
        await _statusGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            int changes = Volatile.Read(ref _statusChanges);
            await PublishAsync(session, _topics.Status, _onlineStatus(), retain: true, ct).ConfigureAwait(false);
            Volatile.Write(ref _statusSentAt, changes);
        }
        finally { _statusGate.Release(); }
    }

    /// <summary>Completes with the session once the link is up (or throws when the token fires).</summary>
    public Task<LinkSession> WaitConnectedAsync(CancellationToken ct)
    {
        Task<LinkSession> up;
        lock (_state) up = _up.Task;
        return up.WaitAsync(ct);
    }

    /// <summary>Asks the loop to look at the connection now (it also looks once a second).</summary>
    public void Wake()
    {
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    /// <summary>
    /// Publishes with QoS 1 on the current session and returns once the PUBACK arrives.
    /// Throws <see cref="MqttLinkDownException"/> when no session is up or it drops before the PUBACK,
    /// <see cref="TimeoutException"/> when no PUBACK came within TimeoutSeconds (the session is then retired), and
    /// <see cref="MqttPublishRefusedException"/> when the broker refuses, or when the packet would be larger than the
    /// broker's Maximum Packet Size (it is then not sent).
    /// </summary>
    public Task PublishAsync(string topic, byte[] payload, bool retain, CancellationToken ct)
    {
        LinkSession session = Current ?? throw new MqttLinkDownException("the MQTT link is down");
        return PublishAsync(session, topic, payload, retain, ct);
    }

    /// <summary>As <see cref="PublishAsync(string, byte[], bool, CancellationToken)"/>, on a given session.</summary>
    public async Task PublishAsync(LinkSession session, string topic, byte[] payload, bool retain, CancellationToken ct)
    {
        if (session.IsLost) throw new MqttLinkDownException($"MQTT session {session.Number} is gone");
        // A broker that announced a Maximum Packet Size closes the connection on a larger packet (mosquitto's
        // max_packet_size) instead of refusing it: the publish then failed as a lost link, was never counted as a
        // refusal, and was sent first again on every new connection, for ever, with nothing behind it delivered.
        long packetBytes = PublishPacketBytes(topic, payload.Length);
        if (session.MaximumPacketSize is uint limit && packetBytes > limit)
            throw new MqttPublishRefusedException($"not sent on {topic}: the message is {packetBytes} bytes as an MQTT packet, over the {limit} bytes the broker takes (its Maximum Packet Size)");
        MqttApplicationMessage message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain)
            .WithContentType(ContentType)
            .Build();
        // A broker that announced a Receive Maximum takes at most that many QoS 1 publishes awaiting their PUBACK from
        // this client (MQTT 5); one more is a protocol error, which a broker may answer by closing the connection.
        SemaphoreSlim? quota = session.SendQuota;
        if (quota is not null)
        {
            using var waiting = CancellationTokenSource.CreateLinkedTokenSource(ct, session.Lost);
            try { await quota.WaitAsync(waiting.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new MqttLinkDownException($"MQTT session {session.Number} is gone");
            }
        }
        try
        {
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct, session.Lost);
            bounded.CancelAfter(_timeout);
            Sent();
            MqttClientPublishResult result;
            try
            {
                result = await _client.PublishAsync(message, bounded.Token).ConfigureAwait(false);
            }
            // MQTTnet reports a cancelled wait for the PUBACK as MqttCommunicationTimedOutException, a cancelled send as
            // OperationCanceledException.
            catch (Exception e) when (e is OperationCanceledException or MqttCommunicationTimedOutException && !ct.IsCancellationRequested)
            {
                if (session.IsLost) throw new MqttLinkDownException($"MQTT session {session.Number} dropped before the PUBACK on {topic}", e) { WhileInFlight = true };
                // The link looks up but did not answer: a frozen broker or a half-open TCP connection. MQTT lets a client
                // resend an unacknowledged QoS 1 message only on a new connection, so retire this one.
                Retire(session, $"no PUBACK within {_timeout.TotalSeconds:0.#} s");
                throw new TimeoutException($"no PUBACK on {topic} within {_timeout.TotalSeconds:0.#} s; reconnecting", e);
            }
            catch (MqttCommunicationException e) when (!ct.IsCancellationRequested)
            {
                Wake();
                throw new MqttLinkDownException($"MQTT session {session.Number} failed on {topic}: {e.Message}", e) { WhileInFlight = true };
            }
            if (result.ReasonCode is not (MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers))
                throw new MqttPublishRefusedException($"broker refused the publish on {topic}: {result.ReasonCode} {result.ReasonString}");
        }
        finally { quota?.Release(); }
    }

    private const string ContentType = "application/json";

    /// <summary>
    /// The size of the MQTT 5 PUBLISH packet <see cref="PublishAsync(LinkSession, string, byte[], bool, CancellationToken)"/>
    /// sends: fixed header, topic, packet id, properties (the content type only) and payload.
    /// </summary>
    public static long PublishPacketBytes(string topic, int payloadBytes)
    {
        long properties = 1 + 2 + System.Text.Encoding.UTF8.GetByteCount(ContentType);
        long remaining = 2 + System.Text.Encoding.UTF8.GetByteCount(topic) + 2 + VariableIntBytes(properties) + properties + payloadBytes;
        return 1 + VariableIntBytes(remaining) + remaining;
    }

    private static int VariableIntBytes(long value) => value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;

    /// <summary>
    /// Has the broker send again what this client left unacknowledged: an MQTT broker resends an unacknowledged QoS 1
    /// message only on a new connection of the session, so after <paramref name="after"/> the session then up (the
    /// message may have come while a connection was still being set up) is retired and the loop reconnects. A call
    /// while one is pending joins it.
    /// </summary>
    public void RedeliverLater(TimeSpan after, string why)
    {
        if (Interlocked.Exchange(ref _redeliveryPending, 1) == 1) return;
        CancellationToken stop = _stop.Token;
        _ = Task.Run(async () =>
        {
            try
            {
                await Task.Delay(after, stop).ConfigureAwait(false);
                LinkSession session = await WaitConnectedAsync(stop).ConfigureAwait(false);
                Volatile.Write(ref _redeliveryPending, 0);
                Retire(session, why);
            }
            catch (OperationCanceledException) { }
        }, CancellationToken.None);
    }

    /// <summary>Marks a session as gone (cancelling whatever waits on it) and has the loop drop and redo the connection.</summary>
    private void Retire(LinkSession session, string why)
    {
        if (!MarkLost(session)) return;
        _log.LogWarning("MQTT session {Session} to {Host}:{Port} retired: {Why}; results queue in the outbox", session.Number, Host, _options.Port, why);
        Volatile.Write(ref _recycle, 1);
        Wake();
    }

    private bool MarkLost(LinkSession session)
    {
        lock (_state)
        {
            if (session.IsLost) return false;
            if (ReferenceEquals(_session, session))
            {
                _session = null;
                if (_up.Task.IsCompleted) _up = new TaskCompletionSource<LinkSession>(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            session.MarkLost();
        }
        return true;
    }

    /// <summary>
    /// The largest MQTT packet the broker may send this client (announced at connect, MQTT 5): a larger message is
    /// dropped by the broker, not held whole in this process's memory. A package is a few hundred KB and a label at
    /// most 16 KiB, so 32 MiB, the inbox's default MaxFileBytes, leaves room for packages far larger than today's.
    /// </summary>
    public const uint MaxPacketBytes = 32 << 20;

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
            // None in the options, so that MQTTnet starts no keep-alive loop of its own; the CONNECT still announces
            // KeepAliveSeconds (KeepAliveAdapterFactory) and the loop pings (KeepAliveAsync).
            .WithKeepAlivePeriod(TimeSpan.Zero)
            .WithTimeout(_timeout)
            .WithMaximumPacketSize(MaxPacketBytes)
            .WithWillTopic(_topics.Status)
            .WithWillPayload(will)
            .WithWillRetain(true)
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithWillContentType("application/json")
            // The broker holds the will this long after the connection ends and drops it if the same session comes
            // back first: a recycle of the link, or a restart by systemd after a crash, shows no "offline" in between.
            .WithWillDelayInterval(WillDelaySeconds);
        if (!string.IsNullOrEmpty(_options.Username))
            builder.WithCredentials(_options.Username, _options.Password ?? "");
        if (_options.Tls || !string.IsNullOrEmpty(_options.CaFile) || !string.IsNullOrEmpty(_options.ClientCertificate))
            builder.WithTlsOptions(BuildTls);
        return builder.Build();
    }

    private void BuildTls(MqttClientTlsOptionsBuilder tls)
    {
        tls.UseTls(true).WithTargetHost(Host);
        var (chain, client) = MqttTlsFiles.Load(_options);
        if (chain is not null) tls.WithTrustChain(chain);
        if (client is not null) tls.WithClientCertificates([client]);
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        // Built in the connect attempt, and kept once built: MQTTnet reads the TLS files while the options are built, and
        // a file that became unreadable after the start's check (replaced, its permissions changed) threw here, outside
        // any catch, and ended the loop for good without a word. It is now a failed attempt, logged and retried.
        MqttClientOptions? options = null;
        TimeSpan min = TimeSpan.FromSeconds(_options.ReconnectMinSeconds), max = TimeSpan.FromSeconds(_options.ReconnectMaxSeconds);
        TimeSpan delay = min;
        int failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                LinkSession? current = Current;
                if (current is not null && !_client.IsConnected && MarkLost(current))
                    _log.LogWarning("MQTT link to {Host}:{Port} lost (session {Session}); results queue in the outbox", Host, _options.Port, current.Number);
                if (Interlocked.Exchange(ref _recycle, 0) == 1 && _client.IsConnected)
                    await DisconnectQuietlyAsync().ConfigureAwait(false);
                if (Current is null)
                {
                    try
                    {
                        options ??= BuildOptions();
                        LinkSession session = await ConnectAsync(options, ct).ConfigureAwait(false);
                        _log.LogInformation("MQTT link up: {Host}:{Port} as {ClientId}, session {Session} (after {Failures} failed attempts)",
                            Host, _options.Port, _options.ClientId, session.Number, failures);
                        delay = min; failures = 0;
                        Connected?.Invoke();
                    }
                    catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        failures++;
                        // The 1st, 10th, 100th ... failure in a row: every tenth was a line every 100 s (at the default
                        // ReconnectMaxSeconds) for as long as a broker outage lasted, days of them on a device left on.
                        if (Logging.IsReported(failures))
                            _log.LogWarning("MQTT connect to {Host}:{Port} failed ({Failures}x; reported at 1, 10, 100 ...): {Error}; retrying in {Delay} s", Host, _options.Port, failures, WithCauses(e), Math.Round(delay.TotalSeconds, 2));
                        if (_client.IsConnected) await DisconnectQuietlyAsync().ConfigureAwait(false);
                        TimeSpan jittered = delay * (0.8 + 0.4 * Random.Shared.NextDouble());
                        await Task.Delay(jittered, ct).ConfigureAwait(false);
                        delay = TimeSpan.FromTicks(Math.Min(max.Ticks, delay.Ticks * 2));
                        continue;
                    }
                }
                await KeepAliveAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { break; }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The loop is the only thing that ever reconnects: it must outlive any surprise.
                _log.LogError(e, "MQTT link loop error; continuing");
                try { await Task.Delay(min, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
            }
        }
    }

    /// <summary>
    /// Waits for a wake-up until the session's next ping is due, and pings when it is: the link's part of MQTT's
    /// keep-alive (the broker drops a client silent for 1.5 times the period it announced, and this side learns of a
    /// frozen broker or a half-open connection only from a request that gets no answer). A broker that asked for a
    /// keep-alive of its own (MQTT 5's Server Keep Alive) is pinged by MQTTnet, which takes that period; the loop then
    /// looks once per period.
    /// </summary>
    private async Task KeepAliveAsync(CancellationToken ct)
    {
        TimeSpan period = TimeSpan.FromSeconds(_options.KeepAliveSeconds);
        if (Current is not { PingedByLibrary: false } session)
        {
            await _wake.WaitAsync(Current is null ? TimeSpan.FromSeconds(1) : period, ct).ConfigureAwait(false);
            return;
        }
        TimeSpan quiet = Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSent));
        if (quiet < period)
        {
            await _wake.WaitAsync(period - quiet, ct).ConfigureAwait(false);
            return;
        }
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct, session.Lost);
        bounded.CancelAfter(_timeout);
        Sent();
        try { await _client.PingAsync(bounded.Token).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or MqttCommunicationTimedOutException && !ct.IsCancellationRequested)
        {
            Retire(session, $"no PINGRESP within {_timeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            // The connection failed under the ping; the loop's next look finds the client disconnected.
            _log.LogDebug("MQTT ping on session {Session} failed: {Error}", session.Number, e.Message);
        }
    }

    private void Sent() => Volatile.Write(ref _lastSent, Stopwatch.GetTimestamp());

    /// <summary>
    /// An exception's message followed by those of its inner exceptions, in one line. MQTTnet's own says only "Error
    /// while connecting host 'Unspecified/broker:1883'", and the cause (a host name that does not resolve, a refused
    /// port, a certificate the broker's chain does not verify) is in the inner one.
    /// </summary>
    internal static string WithCauses(Exception e)
    {
        string text = e.Message.TrimEnd('.');
        for (Exception? inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            string cause = inner.Message.TrimEnd('.');
            if (cause.Length > 0 && !text.Contains(cause, StringComparison.Ordinal)) text += ": " + cause;
        }
        return text.ReplaceLineEndings(" ");
    }

    /// <summary>Connects, subscribes and sends the retained status, each step bounded by TimeoutSeconds.</summary>
    private async Task<LinkSession> ConnectAsync(MqttClientOptions options, CancellationToken ct)
    {
        MqttClientConnectResult connected;
        MqttClientSubscribeResult subscribed;
        using (var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            bounded.CancelAfter(_timeout);
            try
            {
                Sent();
                Interlocked.Increment(ref _connection);
                connected = await _client.ConnectAsync(options, bounded.Token).ConfigureAwait(false);
                if (connected.ResultCode != MqttClientConnectResultCode.Success)
                    throw new MqttLinkDownException($"broker refused the connection: {connected.ResultCode} {connected.ReasonString}");
                subscribed = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                    // Retained labels and updates reach a new session once, not again on every reconnect of this one
                    // (each would be checked and logged again).
                    .WithTopicFilter(Filter(_topics.Feedback, MqttQualityOfServiceLevel.AtLeastOnce, MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly))
                    .WithTopicFilter(Filter(_topics.Updates, MqttQualityOfServiceLevel.AtLeastOnce, MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly))
                    .WithTopicFilter(Filter(Topics.FleetUpdates, MqttQualityOfServiceLevel.AtLeastOnce, MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly))
                    // A capture command is for now: never a retained one (it would fire at every reconnect), and at
                    // QoS 0, so a broker does not keep one for hours while the device is away and fire it on return.
                    .WithTopicFilter(Filter(_topics.Capture, MqttQualityOfServiceLevel.AtMostOnce, MqttRetainHandling.DoNotSendOnSubscribe))
                    .Build(), bounded.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or MqttCommunicationTimedOutException && !ct.IsCancellationRequested)
            {
                throw new TimeoutException($"no answer from the broker within {_timeout.TotalSeconds:0.#} s", e);
            }
        }
        var session = new LinkSession(Interlocked.Increment(ref _sessions), pingedByLibrary: connected.ServerKeepAlive > 0,
            maximumPacketSize: connected.MaximumPacketSize is > 0 and var max ? max : null,
            receiveMaximum: connected.ReceiveMaximum is > 0 and var receive ? receive : null);
        // A broker whose ACL leaves out a topic answers its SUBACK with a refusal (NotAuthorized) and the connection goes
        // on: labels, updates or capture commands on it never arrive. The refusal was thrown away, so nothing said why.
        foreach (MqttClientSubscribeResultItem item in subscribed.Items)
            if (item.ResultCode is not (MqttClientSubscribeResultCode.GrantedQoS0 or MqttClientSubscribeResultCode.GrantedQoS1 or MqttClientSubscribeResultCode.GrantedQoS2))
                _log.LogWarning("MQTT session {Session}: broker refused the subscription to {Topic}: {Reason}; messages on it do not reach this device",
                    session.Number, item.TopicFilter.Topic, string.IsNullOrEmpty(subscribed.ReasonString) ? $"{item.ResultCode}" : $"{item.ResultCode} {subscribed.ReasonString}");
        // The status goes out on the new session before it is announced, so that "online" precedes any result.
        try { await PublishLatestStatusAsync(session, ct).ConfigureAwait(false); }
        catch (MqttPublishRefusedException e)
        {
            // The broker answered, so the connection works; a broker that refuses the status (an ACL without the
            // status topic) may still take results. Failing the connection for it held back every result for ever.
            _log.LogWarning("MQTT session {Session}: {Error}; the status is not retained on the broker, results are sent anyway", session.Number, e.Message);
        }
        lock (_state)
        {
            if (!_client.IsConnected) throw new MqttLinkDownException("the connection dropped while it was being set up");
            _session = session;
            _up.TrySetResult(session);
        }
        // A status that changed while the session was unannounced was not published by UpdateStatusAsync (no session
        // yet) and is newer than the one just sent (a camera that failed right at start was left "ready").
        if (Volatile.Read(ref _statusSentAt) != Volatile.Read(ref _statusChanges)) await TryPublishLatestStatusAsync(session, ct).ConfigureAwait(false);
        return session;
    }

    private static MqttTopicFilter Filter(string topic, MqttQualityOfServiceLevel qos, MqttRetainHandling retain) =>
        new MqttTopicFilterBuilder().WithTopic(topic).WithQualityOfServiceLevel(qos).WithRetainHandling(retain).Build();

    /// <summary>Seconds the broker waits before it publishes the will ("offline"); see <see cref="BuildOptions"/>.</summary>
    public const uint WillDelaySeconds = 10;

    /// <summary>
    /// Ends the connection to recycle the link (or after a failed set-up) keeping the will: a normal disconnect would
    /// discard it, and were the link then never to come back, the retained status would say "online" for good.
    /// </summary>
    private async Task DisconnectQuietlyAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(_timeout);
            await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.DisconnectWithWillMessage).Build(), cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _log.LogDebug("MQTT disconnect: {Error}", e.Message);
        }
    }

    /// <summary>Publishes the retained "offline" status (a clean shutdown does not fire the will) and disconnects.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        if (Current is { } session && _client.IsConnected)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await PublishAsync(session, _topics.Status, Payloads.Status("offline", _deviceId, null, null, null, null, null), retain: true, cts.Token).ConfigureAwait(false);
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _log.LogWarning("MQTT clean disconnect failed: {Error}", e.Message);
            }
        }
        if (Current is { } last) MarkLost(last);
        _client.Dispose();
        _stop.Dispose();
    }
}

/// <summary>
/// One connection of the link, from the loop's successful connect until the loop (or a publish that got no PUBACK)
/// finds it gone. <see cref="Lost"/> fires then, ending every request still waiting on it.
/// </summary>
public sealed class LinkSession
{
    private readonly CancellationTokenSource _lost = new();

    internal LinkSession(int number, bool pingedByLibrary, uint? maximumPacketSize, int? receiveMaximum)
    {
        Number = number;
        PingedByLibrary = pingedByLibrary;
        MaximumPacketSize = maximumPacketSize;
        ReceiveMaximum = receiveMaximum;
        if (receiveMaximum is int most) SendQuota = new SemaphoreSlim(most, most);
        Lost = _lost.Token;
    }

    /// <summary>1 for the first connection since start, counting up.</summary>
    public int Number { get; }

    /// <summary>The broker asked for a keep-alive of its own, and MQTTnet keeps it; otherwise the link pings.</summary>
    internal bool PingedByLibrary { get; }

    /// <summary>The largest packet the broker takes from this client (MQTT 5 CONNACK), or null when it announced none.</summary>
    public uint? MaximumPacketSize { get; }

    /// <summary>The most QoS 1 publishes the broker takes awaiting their PUBACK (MQTT 5 CONNACK), or null when it announced none.</summary>
    public int? ReceiveMaximum { get; }

    internal SemaphoreSlim? SendQuota { get; }

    public CancellationToken Lost { get; }

    public bool IsLost => Lost.IsCancellationRequested;

    internal void MarkLost() => _lost.Cancel();
}

/// <summary>A message that arrived on a subscribed topic, and the connection (connect attempt) it came on.</summary>
public sealed class InboundMessage(string topic, byte[] payload, int connection, MqttApplicationMessageReceivedEventArgs received)
{
    public string Topic => topic;
    public byte[] Payload => payload;
    internal int Connection => connection;
    internal MqttApplicationMessageReceivedEventArgs Received => received;

    /// <summary>
    /// Takes the message over from the receive path, which then goes on to the next one without acknowledging it:
    /// <see cref="MqttLink.AcknowledgeAsync"/> does, once it was handled, or nothing does and the broker sends it again.
    /// </summary>
    public void Defer() => received.AutoAcknowledge = false;
}

public sealed class MqttPublishRefusedException(string message) : Exception(message);

/// <summary>No MQTT session is up, or it dropped before the broker answered.</summary>
public sealed class MqttLinkDownException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The message was handed to the connection before it failed (it may have reached the broker).</summary>
    public bool WhileInFlight { get; init; }
}
