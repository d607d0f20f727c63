using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// The part of a stage's <c>Model.key</c> that <see cref="PeftTransformerBase"/> writes: input columns, batch size,
/// options JSON, the stream table and (format 2) per-field fingerprints, all under one SHA-256.
/// </summary>
/// <remarks>
/// Format 2 (written now): int 2; int payload length; the payload; 32 bytes SHA-256 of the payload. The payload holds
/// int input count and the names, int batch size, bool and options JSON, int stream count and for each its name,
/// long length and 32-byte SHA-256, then int field count and for each its dotted path and 8-byte fingerprint.
/// Strings are written inline rather than in ML.NET's string table, so the hash covers them.
/// Format 1 (read only): the same fields without payload length, hash or fingerprints; names in the string table.
/// </remarks>
internal sealed record PeftStageHeader(string[] Inputs, int BatchSize, string? OptionsJson,
    IReadOnlyList<PeftStreamRecord> Streams)
{
    internal const int CurrentVersion = 2;
    internal const int MaxBatchSize = 1 << 16;
    private const int MaxPayloadBytes = 64 << 20;

    /// <summary>Writes format 2 after the version number.</summary>
    internal void Write(BinaryWriter writer)
    {
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Inputs.Length);
            foreach (var name in Inputs)
                w.Write(name);
            w.Write(BatchSize);
            w.Write(OptionsJson is not null);
            if (OptionsJson is not null)
                w.Write(OptionsJson);
            WriteStreams(w, Streams);
            var fields = OptionsJson is null ? [] : PeftHeaderFields.Fingerprint(OptionsJson);
            w.Write(fields.Count);
            foreach (var (path, fingerprint) in fields)
            {
                w.Write(path);
                w.Write(fingerprint);
            }
        }
        var payload = buffer.ToArray();
        writer.Write(CurrentVersion);
        writer.Write(payload.Length);
        writer.Write(payload);
        writer.Write(SHA256.HashData(payload));
    }

    /// <summary>Reads format 2 (after the version number), checking the hash before trusting any field.</summary>
    internal static PeftStageHeader Read(BinaryReader reader, string entry)
    {
        int length = reader.ReadInt32();
        Check(length is > 0 and <= MaxPayloadBytes, entry, $"invalid header length {length}");
        var payload = reader.ReadBytes(length);
        var hash = reader.ReadBytes(32);
        Check(payload.Length == length && hash.Length == 32, entry, "the stage header is truncated");
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(hash))
            throw new PeftModelFormatException(
                $"{entry}: the stage header fails its SHA-256 check{Diagnose(payload)}; " +
                                                   "the file is damaged or was edited after it was saved.");
        using var r = new BinaryReader(new MemoryStream(payload), Encoding.UTF8);
        var header = ReadFields(r, entry, r.ReadString);
        int fieldCount = r.ReadInt32();
        for (int i = 0; i < fieldCount; i++)
        {
            r.ReadString();
            r.ReadBytes(PeftHeaderFields.FingerprintBytes);
        }
        Check(r.BaseStream.Position == payload.Length, entry, "the stage header has unexpected trailing bytes");
        return header;
    }

    /// <summary>Reads format 1 (after the version number): no hash; the fields are validated only.</summary>
    internal static PeftStageHeader ReadLegacy(BinaryReader reader, string entry, Func<string> readName)
        => ReadFields(reader, entry, readName);

    private static PeftStageHeader ReadFields(BinaryReader reader, string entry, Func<string> readName)
    {
        int inputCount = reader.ReadInt32();
        Check(inputCount is > 0 and <= 1024, entry, $"invalid input column count {inputCount}");
        var inputs = new string[inputCount];
        for (int i = 0; i < inputCount; i++)
        {
            inputs[i] = readName();
            Check(!string.IsNullOrWhiteSpace(inputs[i]), entry, $"input column {i} has no name");
        }
        int batchSize = reader.ReadInt32();
        Check(batchSize is > 0 and <= MaxBatchSize, entry, $"invalid batch size {batchSize}");
        string? options = reader.ReadBoolean() ? reader.ReadString() : null;
        int streamCount = reader.ReadInt32();
        Check(streamCount is >= 0 and <= 4096, entry, $"invalid stream count {streamCount}");
        var streams = new List<PeftStreamRecord>(streamCount);
        for (int i = 0; i < streamCount; i++)
        {
            string name = readName();
            long length = reader.ReadInt64();
            byte[] hash = reader.ReadBytes(32);
            Check(length >= 0 && hash.Length == 32, entry, $"invalid entry for stream '{name}'");
            Check(streams.All(s => s.Name != name), entry, $"stream '{name}' is listed twice");
            streams.Add(new PeftStreamRecord(name, length, hash));
        }
        return new PeftStageHeader(inputs, batchSize, options, streams);
    }

    private static void WriteStreams(BinaryWriter w, IReadOnlyList<PeftStreamRecord> streams)
    {
        w.Write(streams.Count);
        foreach (var stream in streams)
        {
            w.Write(stream.Name);
            w.Write(stream.Length);
            w.Write(stream.Sha256);
        }
    }

    /// <summary>Names the options fields that changed, when the damaged payload still parses that far.</summary>
    private static string Diagnose(byte[] payload)
    {
        try
        {
            using var r = new BinaryReader(new MemoryStream(payload), Encoding.UTF8);
            var header = ReadFields(r, "", r.ReadString);
            int count = r.ReadInt32();
            if (header.OptionsJson is null || count is < 0 or > 100_000)
                return "";
            var saved = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            for (int i = 0; i < count; i++)
                saved[r.ReadString()] = r.ReadBytes(PeftHeaderFields.FingerprintBytes);
            var changed = PeftHeaderFields.Changed(saved, PeftHeaderFields.Fingerprint(header.OptionsJson));
            return changed.Count == 0 ? "" : $": field(s) {string.Join(", ", changed.Select(c => $"'{c}'"))} changed";
        }
        catch (Exception ex) when (ex is IOException or FormatException or JsonException or ArgumentException)
        {
            return "";
        }
    }

    private static void Check(bool condition, string entry, string message)
    {
        if (!condition)
            throw new PeftModelFormatException($"{entry}: {message}.");
    }
}
