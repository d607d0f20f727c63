using System.Security.Cryptography;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Pass-through stream (read-only or write-only) that counts the bytes and SHA-256-hashes them on the way.
/// Does not own the inner stream.
/// </summary>
internal sealed class HashingStream : Stream
{
    private readonly Stream _inner;
    private readonly bool _writing;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public HashingStream(Stream inner, bool writing)
    {
        _inner = inner;
        _writing = writing;
    }

    /// <summary>Bytes that went through so far.</summary>
    public long Length64 { get; private set; }

    public override bool CanRead => !_writing;

    public override bool CanSeek => false;

    public override bool CanWrite => _writing;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => Length64;
        set => throw new NotSupportedException();
    }

    /// <summary>SHA-256 of the bytes that went through; call once, at the end.</summary>
    public byte[] GetHash() => _hash.GetHashAndReset();

    /// <summary>Reads (and hashes) what is left of the inner stream.</summary>
    public void Drain()
    {
        var buffer = new byte[81920];
        while (Read(buffer, 0, buffer.Length) > 0)
        {
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_writing)
            throw new NotSupportedException();
        int read = _inner.Read(buffer);
        _hash.AppendData(buffer[..read]);
        Length64 += read;
        return read;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (!_writing)
            throw new NotSupportedException();
        _inner.Write(buffer);
        _hash.AppendData(buffer);
        Length64 += buffer.Length;
    }

    public override void Flush() => _inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _hash.Dispose();
        base.Dispose(disposing);
    }
}
