using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Given to <see cref="PeftTransformerBase"/>'s save hook: records the transformer's options (as JSON, in the model
/// header) and writes named binary streams (weights, tokenizer files, ...) into the model's folder of the .zip.
/// Each stream's length and SHA-256 go into the header, and loading checks them.
/// </summary>
internal sealed class PeftModelWriter
{
    internal static readonly JsonSerializerOptions JsonOptions = new() { IncludeFields = true };

    private readonly ModelSaveContext _ctx;
    private readonly string _owner;
    private readonly List<PeftStreamRecord> _streams = [];

    internal PeftModelWriter(ModelSaveContext ctx, string owner)
    {
        _ctx = ctx;
        _owner = owner;
    }

    internal string? OptionsJson { get; private set; }

    internal IReadOnlyList<PeftStreamRecord> Streams => _streams;

    /// <summary>Stores <paramref name="options"/> as JSON in the model header (at most once per save).</summary>
    /// <typeparam name="T">A type System.Text.Json can round-trip (public properties or fields).</typeparam>
    /// <param name="options">The options to store.</param>
    public void WriteOptions<T>(T options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (OptionsJson is not null)
            throw new InvalidOperationException($"{_owner}: options were already written.");
        OptionsJson = JsonSerializer.Serialize(options, JsonOptions);
    }

    /// <summary>Writes a named binary stream next to the model header.</summary>
    /// <param name="name">
    /// Stream name: 1 to 64 characters among letters, digits, '_', '-' and '.'; unique per model.
    /// </param>
    /// <param name="write">Writes the content.</param>
    public void WriteStream(string name, Action<BinaryWriter> write)
    {
        CheckStreamName(name);
        ArgumentNullException.ThrowIfNull(write);
        if (_streams.Any(s => s.Name == name))
            throw new ArgumentException($"{_owner}: stream '{name}' was already written.", nameof(name));

        long length = 0;
        byte[]? hash = null;
        _ctx.SaveBinaryStream(name, entry =>
        {
            entry.Flush();
            using var hashing = new HashingStream(entry.BaseStream, writing: true);
            using (var writer = new BinaryWriter(hashing, Encoding.UTF8, leaveOpen: true))
            {
                write(writer);
                writer.Flush();
            }
            length = hashing.Length64;
            hash = hashing.GetHash();
        });
        _streams.Add(new PeftStreamRecord(name, length, hash!));
    }

    /// <summary>
    /// Saves a nested model (e.g. an ensemble member) in a sub-folder <paramref name="name"/> of this model's folder.
    /// </summary>
    internal void WriteModel(string name, ICanSaveModel model)
    {
        CheckStreamName(name);
        _ctx.SaveModel(model, name);
    }

    internal static void CheckStreamName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length is < 1 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')
            || name is "." or ".." || name.Equals("Model.key", StringComparison.OrdinalIgnoreCase)
            || name.Equals("Model.bin", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException(
                $"'{name}' is not a valid stream name (1 to 64 of A-Z a-z 0-9 _ - ., not Model.key/Model.bin).",
                nameof(name));
        }
    }
}

/// <summary>Name, length and SHA-256 of one saved binary stream.</summary>
internal sealed record PeftStreamRecord(string Name, long Length, byte[] Sha256);
