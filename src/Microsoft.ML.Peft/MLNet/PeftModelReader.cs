using System.Text;
using System.Text.Json;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// What a <see cref="PeftTransformerBase"/> loader gets back from the saved header: the common settings, the options
/// JSON and checked access to the named binary streams. Valid only while the loader runs.
/// </summary>
internal sealed class PeftModelReader
{
    private readonly ModelLoadContext _ctx;
    private readonly string _owner;
    private readonly string? _optionsJson;
    private readonly Dictionary<string, PeftStreamRecord> _streams;

    internal PeftModelReader(ModelLoadContext ctx, string owner, string entry, uint formatVersion,
        string[] inputColumnNames, int batchSize, string? optionsJson, Dictionary<string, PeftStreamRecord> streams)
    {
        _ctx = ctx;
        // Messages name the zip entry (Transform_000/Model.key) and the stage kind, so a user can find the damage.
        _owner = $"{entry} ({owner})";
        EntryName = entry;
        FormatVersion = formatVersion;
        InputColumnNames = inputColumnNames;
        BatchSize = batchSize;
        _optionsJson = optionsJson;
        _streams = streams;
    }

    /// <summary>
    /// Loads a nested model that <see cref="PeftModelWriter.WriteModel"/> saved under <paramref name="name"/>.
    /// </summary>
    internal T ReadModel<T>(IHostEnvironment env, string name) where T : class
    {
        if (!_ctx.LoadModelOrNull<T, SignatureLoadModel>(env, out var model, name) || model is null)
            throw new PeftModelFormatException(
                $"{_owner}: nested model '{name}' is missing or is not a {typeof(T).Name}.");
        return model;
    }

    /// <summary>The zip entry of the stage's header (<c>Transform_000/Model.key</c>), for error messages.</summary>
    public string EntryName { get; }

    /// <summary>The zip entry of the stream <paramref name="name"/>, for error messages.</summary>
    public string StreamEntryName(string name) => EntryName[..(EntryName.LastIndexOf('/') + 1)] + name;

    /// <summary>
    /// The format version the model was written with (see <see cref="PeftModelSignature.FormatVersion"/>).
    /// </summary>
    public uint FormatVersion { get; }

    /// <summary>The transformer's input column names, as saved.</summary>
    public IReadOnlyList<string> InputColumnNames { get; }

    /// <summary>The transformer's batch size, as saved.</summary>
    public int BatchSize { get; }

    /// <summary>Whether options were saved.</summary>
    public bool HasOptions => _optionsJson is not null;

    /// <summary>Names of the saved binary streams.</summary>
    public IReadOnlyCollection<string> StreamNames => _streams.Keys;

    /// <summary>Reads back the options saved with <see cref="PeftModelWriter.WriteOptions{T}"/>.</summary>
    /// <exception cref="PeftModelFormatException">
    /// No options were saved, or they do not parse as <typeparamref name="T"/>.
    /// </exception>
    public T ReadOptions<T>()
    {
        if (_optionsJson is null)
            throw new PeftModelFormatException($"{_owner}: the saved model has no options.");
        try
        {
            return JsonSerializer.Deserialize<T>(_optionsJson, PeftModelWriter.JsonOptions)
                ?? throw new PeftModelFormatException($"{_owner}: the saved options are null.");
        }
        catch (JsonException ex)
        {
            throw new PeftModelFormatException(
                $"{_owner}: the saved options do not parse as {typeof(T).Name}: {ex.Message}", ex);
        }
    }

    /// <summary>Whether a stream of that name was saved.</summary>
    public bool HasStream(string name) => _streams.ContainsKey(name);

    /// <summary>
    /// Reads the named stream. Its length and SHA-256 are checked against the header once <paramref name="read"/>
    /// returns (what it left unread is read and hashed too); if <paramref name="read"/> throws on damaged content,
    /// the damage is reported instead.
    /// </summary>
    /// <exception cref="PeftModelFormatException">
    /// The stream is missing, or its content does not match the header.
    /// </exception>
    public void ReadStream(string name, Action<BinaryReader> read)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(read);
        if (!_streams.TryGetValue(name, out var record))
            throw new PeftModelFormatException($"{_owner}: the saved model has no stream '{name}'.");

        Exception? readError = null;
        long length = 0;
        byte[]? hash = null;
        bool found = _ctx.TryLoadBinaryStream(name, entry =>
        {
            using var hashing = new HashingStream(entry.BaseStream, writing: false);
            try
            {
                using var reader = new BinaryReader(hashing, Encoding.UTF8, leaveOpen: true);
                read(reader);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                readError = ex;
            }
            hashing.Drain();
            length = hashing.Length64;
            hash = hashing.GetHash();
        });

        if (!found)
            throw new PeftModelFormatException(
                $"{_owner}: stream '{name}' is listed in the model header but missing from the model file " +
                $"({StreamEntryName(name)}).");
        if (length != record.Length || !hash.AsSpan().SequenceEqual(record.Sha256))
        {
            throw new PeftModelFormatException(
                $"{_owner}: stream '{name}' is corrupted ({StreamEntryName(name)}): " +
                $"{length} bytes with SHA-256 {Convert.ToHexString(hash!)}, " +
                $"expected {record.Length} bytes with SHA-256 {Convert.ToHexString(record.Sha256)}.", readError);
        }
        // Intact content that the loader could not read: the loader's own error says more than we could.
        if (readError is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(readError).Throw();
    }
}
