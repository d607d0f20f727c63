using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Peft.Onnx;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// A small safetensors reader/writer (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length, a UTF-8 JSON header <c>{"__metadata__": {..}, name: {"dtype", "shape", "data_offsets": [begin, end]}}</c>
/// (offsets relative to the end of the header), then the raw little-endian tensor bytes.
/// </summary>
/// <remarks>
/// Written here rather than taken from TorchSharp.PyBridge so that a cache file can carry a SHA-256 of its data in
/// <c>__metadata__</c> and be verified while it is read, tensors are read straight into their storage (no intermediate
/// array), and every structural defect comes out as <see cref="InvalidDataException"/>. It is the one
/// implementation for every tensor file the library touches (weight cache, Hugging Face checkpoints, the tensors in a
/// model zip), so the zip's entries carry the same checksum; zips written before that (by TorchSharp.PyBridge, no
/// metadata) are plain safetensors and read the same way.
/// </remarks>
internal static class SafeTensors
{
    /// <summary>Metadata key holding the lowercase hex SHA-256 of the data section, when the writer added it.</summary>
    public const string DataHashKey = "peft_data_sha256";

    private const long MaxHeaderBytes = 100L << 20;

    /// <summary>One header entry.</summary>
    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    /// <summary>A parsed header: entries in file order, metadata, and where the data section starts.</summary>
    public sealed record Header(List<Entry> Entries, Dictionary<string, string> Metadata, long DataStart,
                                long DataLength);

    public static string ToDType(ScalarType type) => type switch
    {
        ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
        _ => throw new NotSupportedException($"safetensors: tensor type {type} is not supported."),
    };

    public static ScalarType FromDType(string dtype) => dtype switch
    {
        "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool,
        _ => throw new InvalidDataException($"safetensors: dtype '{dtype}' is not supported."),
    };

    private static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" => 8, "F32" or "I32" => 4, "F16" or "BF16" or "I16" => 2, "I8" or "U8" or "BOOL" => 1,
        _ => throw new InvalidDataException($"safetensors: dtype '{dtype}' is not supported."),
    };

    /// <summary>
    /// Writes <paramref name="tensors"/> (CPU tensors; others are copied to the CPU) in the given order, adding the
    /// SHA-256 of the data section to the metadata under <see cref="DataHashKey"/>.
    /// </summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors,
                             IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var scope = NewDisposeScope();
        var list = new List<(string Name, Tensor Tensor)>();
        foreach (var (name, tensor) in tensors)
        {
            var t = tensor.detach();
            if (t.device_type != TorchSharp.DeviceType.CPU) t = t.cpu();
            if (!t.is_contiguous()) t = t.contiguous();
            list.Add((name, t));
        }
        WriteCore(stream, list.Select(e => (e.Name, ToDType(e.Tensor.dtype), e.Tensor.shape,
            e.Tensor.NumberOfElements * e.Tensor.ElementSize)).ToList(), i => list[i].Tensor.bytes, metadata);
    }

    /// <summary>Writes managed float32 tensors (F32), as <see cref="Write(Stream, IEnumerable{KeyValuePair{string,
    /// Tensor}}, IReadOnlyDictionary{string, string}?)"/> does libtorch's.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, FloatTensor>> tensors,
                             IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        WriteCore(stream, list.Select(e => (e.Key, "F32", e.Value.Shape, (long)e.Value.Data.Length * 4)).ToList(),
            i => MemoryMarshal.AsBytes(list[i].Value.Data.AsSpan()), metadata);
    }

    private delegate ReadOnlySpan<byte> EntryBytes(int index);

    private static void WriteCore(Stream stream, List<(string Name, string DType, long[] Shape, long Length)> entries,
                                  EntryBytes bytes, IReadOnlyDictionary<string, string>? metadata)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < entries.Count; i++) hash.AppendData(bytes(i));
        string dataHash = Convert.ToHexStringLower(hash.GetHashAndReset());

        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            if (metadata is not null)
                foreach (var (k, v) in metadata)
                    if (k != DataHashKey) w.WriteString(k, v);
            w.WriteString(DataHashKey, dataHash);
            w.WriteEndObject();
            long offset = 0;
            foreach (var (name, dtype, shape, length) in entries)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (long d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += length;
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces so the data starts 8-byte aligned (allowed by the format).
        int pad = (int)((8 - json.Length % 8) % 8);
        for (int i = 0; i < pad; i++) json.WriteByte((byte)' ');

        Span<byte> prefix = stackalloc byte[8];
        BitConverter.TryWriteBytes(prefix, (ulong)json.Length);
        stream.Write(prefix);
        json.Position = 0;
        json.CopyTo(stream);
        for (int i = 0; i < entries.Count; i++) stream.Write(bytes(i));
    }

    /// <summary>Reads and validates the header of a safetensors stream positioned at its start.</summary>
    public static Header ReadHeader(Stream stream, string source)
    {
        long total = stream.CanSeek ? stream.Length : -1;
        Span<byte> prefix = stackalloc byte[8];
        try { stream.ReadExactly(prefix); }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"safetensors file '{source}' is truncated (no header).");
        }
        ulong headerLength = BitConverter.ToUInt64(prefix);
        if (headerLength == 0 || headerLength > MaxHeaderBytes || (total >= 0 && (long)headerLength > total - 8))
            throw new InvalidDataException($"safetensors file '{source}' has an invalid header length {headerLength}.");
        var headerBytes = new byte[headerLength];
        try { stream.ReadExactly(headerBytes); }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"safetensors file '{source}' is truncated (header).");
        }

        var entries = new List<Entry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(headerBytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException("header is not a JSON object");
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    if (p.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in p.Value.EnumerateObject())
                            if (m.Value.ValueKind == JsonValueKind.String) metadata[m.Name] = m.Value.GetString()!;
                    continue;
                }
                string dtype = p.Value.GetProperty("dtype").GetString() ?? "";
                long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                long[] offsets = p.Value.GetProperty("data_offsets").EnumerateArray()
                    .Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2)
                    throw new InvalidDataException($"tensor '{p.Name}' has {offsets.Length} data offsets");
                entries.Add(new Entry(p.Name, dtype, shape, offsets[0], offsets[1]));
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException
                                      or FormatException or InvalidDataException)
        {
            throw new InvalidDataException($"safetensors file '{source}' has a malformed header: {e.Message}", e);
        }

        long dataStart = 8 + (long)headerLength;
        long dataLength = 0;
        foreach (var e in entries)
        {
            long elements = 1;
            foreach (long d in e.Shape)
            {
                if (d < 0)
                    throw new InvalidDataException(
                        $"safetensors file '{source}': tensor '{e.Name}' has a negative dimension.");
                elements *= d;
            }
            long expected = elements * ElementSize(e.DType);
            if (e.Begin < 0 || e.End - e.Begin != expected)
                throw new InvalidDataException(
                    $"safetensors file '{source}': tensor '{e.Name}' [{string.Join(",", e.Shape)}] {e.DType} " +
                    $"spans [{e.Begin}, {e.End}), expected {expected} bytes.");
            dataLength = Math.Max(dataLength, e.End);
        }
        if (total >= 0 && dataStart + dataLength > total)
            throw new InvalidDataException(
                $"safetensors file '{source}' is truncated: {total} bytes, its header needs {dataStart + dataLength}.");
        return new Header(entries, metadata, dataStart, dataLength);
    }

    /// <summary>Reads just the header of a safetensors file.</summary>
    public static Header ReadHeader(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>How a read treats the data checksum.</summary>
    public enum HashCheck
    {
        /// <summary>Do not verify (files written by other tools carry none).</summary>
        None,
        /// <summary>
        /// Verify when the file carries <see cref="DataHashKey"/> (tensors in model zips: older zips lack it).
        /// </summary>
        WhenRecorded,
        /// <summary>The file must carry <see cref="DataHashKey"/> and its data must match it (cache entries).</summary>
        Required,
    }

    /// <summary>
    /// Reads every tensor (or those <paramref name="keep"/> accepts) from a safetensors file into new CPU tensors.
    /// When <paramref name="verifyHash"/> is set, the file must carry <see cref="DataHashKey"/> and its data must
    /// match it.
    /// </summary>
    public static Dictionary<string, Tensor> Read(string path, bool verifyHash, Func<string, bool>? keep = null)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1,
                                          System.IO.FileOptions.SequentialScan);
        return Read(stream, path, verifyHash ? HashCheck.Required : HashCheck.None, keep);
    }

    /// <summary>
    /// Reads every tensor (or those <paramref name="keep"/> accepts) from a safetensors stream positioned at its start
    /// into new CPU tensors, in header order. A stream that cannot seek (a zip entry) is buffered first, since tensors
    /// need not be stored in header order. <paramref name="source"/> names the stream in error messages.
    /// </summary>
    public static Dictionary<string, Tensor> Read(Stream stream, string source, HashCheck check,
                                                  Func<string, bool>? keep = null)
    {
        if (!stream.CanSeek)
        {
            using var buffered = new MemoryStream();
            stream.CopyTo(buffered);
            buffered.Position = 0;
            return Read(buffered, source, check, keep);
        }
        var header = ReadHeader(stream, source);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            ReadData(stream, source, header, check, keep, e =>
            {
                var t = empty(e.Shape, FromDType(e.DType));
                result.Add(e.Name, t);
                return t.bytes;
            });
            // Restore header order (the HF order the writer used).
            var inHeaderOrder = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var e in header.Entries) if (result.TryGetValue(e.Name, out var t)) inHeaderOrder.Add(e.Name, t);
            return inHeaderOrder;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <see cref="Read(Stream, string, HashCheck, Func{string, bool}?)"/> into managed float32 tensors (F16 and BF16
    /// widened, integers and booleans converted), in header order: the reader of processes that never load libtorch.
    /// </summary>
    public static Dictionary<string, FloatTensor> ReadFloats(Stream stream, string source, HashCheck check,
                                                             Func<string, bool>? keep = null)
    {
        if (!stream.CanSeek)
        {
            using var buffered = new MemoryStream();
            stream.CopyTo(buffered);
            buffered.Position = 0;
            return ReadFloats(buffered, source, check, keep);
        }
        var header = ReadHeader(stream, source);
        var raw = new Dictionary<string, (Entry Entry, byte[]? Bytes, float[]? Floats)>(StringComparer.Ordinal);
        ReadData(stream, source, header, check, keep, e =>
        {
            if (e.DType == "F32")
            {
                // Straight into the float array: no second copy of a base's weights.
                var floats = GC.AllocateUninitializedArray<float>(checked((int)((e.End - e.Begin) / 4)));
                raw.Add(e.Name, (e, null, floats));
                return MemoryMarshal.AsBytes(floats.AsSpan());
            }
            var bytes = GC.AllocateUninitializedArray<byte>(checked((int)(e.End - e.Begin)));
            raw.Add(e.Name, (e, bytes, null));
            return bytes;
        });
        var result = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        foreach (var e in header.Entries)
            if (raw.TryGetValue(e.Name, out var r))
                result.Add(e.Name, new FloatTensor(e.Shape, r.Floats ?? ToFloats(r.Entry, r.Bytes!)));
        return result;
    }

    /// <summary><see cref="ReadFloats(Stream, string, HashCheck, Func{string, bool}?)"/> on a file.</summary>
    public static Dictionary<string, FloatTensor> ReadFloats(string path, bool verifyHash)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1,
                                          System.IO.FileOptions.SequentialScan);
        return ReadFloats(stream, path, verifyHash ? HashCheck.Required : HashCheck.None);
    }

    private static float[] ToFloats(Entry e, byte[] bytes)
    {
        switch (e.DType)
        {
            case "F32": return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            case "F16": return MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(h => (float)h).ToArray();
            case "BF16":
                var bf = MemoryMarshal.Cast<byte, ushort>(bytes);
                var f = new float[bf.Length];
                for (int i = 0; i < f.Length; i++) f[i] = BitConverter.Int32BitsToSingle(bf[i] << 16);
                return f;
            case "F64": return MemoryMarshal.Cast<byte, double>(bytes).ToArray().Select(d => (float)d).ToArray();
            case "I64": return MemoryMarshal.Cast<byte, long>(bytes).ToArray().Select(v => (float)v).ToArray();
            case "I32": return MemoryMarshal.Cast<byte, int>(bytes).ToArray().Select(v => (float)v).ToArray();
            case "I16": return MemoryMarshal.Cast<byte, short>(bytes).ToArray().Select(v => (float)v).ToArray();
            case "I8": return bytes.Select(v => (float)(sbyte)v).ToArray();
            default: return bytes.Select(v => (float)v).ToArray(); // U8, BOOL
        }
    }

    /// <summary>Where each entry's bytes go; called once per entry read, in file order.</summary>
    private delegate Span<byte> EntryDestination(Entry entry);

    // The checks every read makes: checksum policy, tiling when hashed, truncation; bytes go where asked.
    private static void ReadData(Stream stream, string source, Header header, HashCheck check,
                                 Func<string, bool>? keep, EntryDestination destination)
    {
        string? expectedHash = null;
        bool verifyHash = check switch
        {
            HashCheck.Required => header.Metadata.TryGetValue(DataHashKey, out expectedHash)
                ? true
                : throw new InvalidDataException(
                    $"safetensors file '{source}' carries no data checksum ({DataHashKey})."),
            HashCheck.WhenRecorded => header.Metadata.TryGetValue(DataHashKey, out expectedHash),
            _ => false,
        };
        if (verifyHash && keep is not null)
            throw new ArgumentException("Hash verification needs every tensor to be read.", nameof(keep));

        var ordered = header.Entries.OrderBy(e => e.Begin).ToList();
        if (verifyHash)
        {
            // The checksum covers the whole data section, so the tensors must tile it exactly.
            long at = 0;
            foreach (var e in ordered)
            {
                if (e.Begin != at)
                    throw new InvalidDataException(
                        $"safetensors file '{source}': tensor '{e.Name}' does not follow the previous one.");
                at = e.End;
            }
        }

        using var hash = verifyHash ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
        foreach (var e in ordered)
        {
            if (keep is not null && !keep(e.Name)) continue;
            var span = destination(e);
            stream.Position = header.DataStart + e.Begin;
            try { stream.ReadExactly(span); }
            catch (EndOfStreamException)
            {
                throw new InvalidDataException($"safetensors file '{source}' is truncated in tensor '{e.Name}'.");
            }
            hash?.AppendData(span);
        }
        if (hash is not null)
        {
            string actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (!string.Equals(actual, expectedHash, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"safetensors file '{source}' is corrupt: data checksum {actual} " +
                                               $"does not match the recorded {expectedHash}.");
        }
    }

    /// <summary>
    /// Writes a safetensors file atomically: to a temporary file in the same folder, then moved over
    /// <paramref name="path"/>.
    /// </summary>
    public static void WriteAtomic(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
                                   IReadOnlyDictionary<string, string>? metadata = null)
        => AtomicFile.Write(path, s => Write(s, tensors, metadata));

    /// <summary>Writes managed float32 tensors atomically.</summary>
    public static void WriteAtomic(string path, IEnumerable<KeyValuePair<string, FloatTensor>> tensors,
                                   IReadOnlyDictionary<string, string>? metadata = null)
        => AtomicFile.Write(path, s => Write(s, tensors, metadata));
}

/// <summary>
/// Atomic file replacement: write a uniquely named temporary file next to the target, flush, then rename.
/// </summary>
internal static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temp = Path.Combine(directory,
                                   $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    public static void WriteText(string path, string text) => Write(path, s => s.Write(Encoding.UTF8.GetBytes(text)));
}
