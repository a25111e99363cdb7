namespace QanaEdge.Daemon.Messaging;

/// <summary>
/// A client connection's stream as the embedded broker reads it, which follows the MQTT packets through it and fails
/// the read that would hand over a fixed header declaring a packet larger than <c>maxPacketBytes</c>. MQTTnet's server
/// sizes a packet's buffer from its fixed header and reads the whole packet before anything can look at it, so a local
/// publisher could make the daemon allocate up to MQTT's 256 MB per message; here the connection is closed once the
/// length is known, before MQTTnet has seen it (as mosquitto does past its <c>max_packet_size</c>).
/// </summary>
internal sealed class PacketSizeLimitStream(Stream inner, long maxPacketBytes, Action<long> refused) : Stream
{
    private enum Part { Type, Length, Body }

    private Part _part = Part.Type;
    private long _length;          // the remaining length, as far as its bytes have arrived
    private int _lengthBytes;      // how many of its (at most 4) bytes have
    private long _bodyLeft;        // bytes of the current packet's body still to come

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        Follow(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        int read = inner.Read(buffer, offset, count);
        Follow(buffer.AsSpan(offset, read));
        return read;
    }

    /// <summary>Moves through the bytes just read; throws, before they are returned, at a header over the limit.</summary>
    private void Follow(ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length;)
        {
            switch (_part)
            {
                case Part.Type:
                    (_part, _length, _lengthBytes) = (Part.Length, 0, 0);
                    i++;
                    break;
                case Part.Length:
                    byte b = bytes[i++];
                    _length |= (long)(b & 0x7F) << (7 * _lengthBytes++);
                    if ((b & 0x80) != 0)
                    {
                        // MQTT's variable byte integer has at most four bytes; MQTTnet refuses a fifth as malformed too.
                        if (_lengthBytes == 4) throw new IOException("malformed MQTT packet: its remaining length has more than four bytes");
                        break;
                    }
                    long packet = 1 + _lengthBytes + _length;
                    if (packet > maxPacketBytes)
                    {
                        refused(packet);
                        throw new IOException($"MQTT packet of {packet} bytes refused: over the {maxPacketBytes}-byte limit");
                    }
                    (_part, _bodyLeft) = _length == 0 ? (Part.Type, 0) : (Part.Body, _length);
                    break;
                case Part.Body:
                    int taken = (int)Math.Min(_bodyLeft, bytes.Length - i);
                    i += taken;
                    if ((_bodyLeft -= taken) == 0) _part = Part.Type;
                    break;
            }
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public override void Flush() => inner.Flush();

    public override bool CanRead => inner.CanRead;
    public override bool CanWrite => inner.CanWrite;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync() => inner.DisposeAsync();
}
