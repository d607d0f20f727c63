using System.Collections;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// A Hugging Face model folder: <c>config.json</c>, <c>model.safetensors</c> (or <c>pytorch_model.bin</c>) and the
/// tokenizer files. Checkpoint names are mapped onto <see cref="BertModel"/>'s (<see cref="CheckpointNames"/>) and
/// converted to float32; the checkpoint is read again at each <see cref="ReadWeights"/>, so no tensors are held.
/// </summary>
internal sealed class HfFolderSource : IWeightSource
{
    private static readonly string[] WeightFiles = ["model.safetensors", "pytorch_model.bin"];
    private static readonly string[] VocabularyFiles = ["vocab.txt", "vocab.json"];

    private readonly string _weightsPath;

    /// <summary>Reads the folder's config and vocabulary, hashes the checkpoint and validates its tensors.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A required file is missing (the message lists the folder).</exception>
    /// <exception cref="InvalidDataException">The checkpoint does not match its config.</exception>
    public HfFolderSource(string path)
    {
        var stopwatch = Stopwatch.StartNew();
        ArgumentException.ThrowIfNullOrEmpty(path);
        string folder = Path.GetFullPath(path);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");
        string Listing() => string.Join(", ", Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName)
                                                       .Order());

        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"Model folder '{folder}' has no config.json (it has: {Listing()}).",
                                            configPath);
        var config = EncoderConfig.FromFile(configPath);

        string? weightsPath = WeightFiles.Select(f => Path.Combine(folder, f)).FirstOrDefault(File.Exists);
        if (weightsPath is null)
        {
            string sharded = File.Exists(Path.Combine(folder, "model.safetensors.index.json"))
                          || File.Exists(Path.Combine(folder, "pytorch_model.bin.index.json"))
                ? " Sharded checkpoints are not supported." : "";
            throw new FileNotFoundException($"Model folder '{folder}' has neither model.safetensors nor " +
                                            $"pytorch_model.bin (it has: {Listing()}).{sharded}");
        }

        string? vocabPath = VocabularyFiles.Select(f => Path.Combine(folder, f)).FirstOrDefault(File.Exists);
        if (vocabPath is null)
            throw new FileNotFoundException($"Model folder '{folder}' has no tokenizer vocabulary (vocab.txt or " +
                                            $"vocab.json; it has: {Listing()}).");
        byte[] vocab = File.ReadAllBytes(vocabPath);
        bool doLowerCase = ReadTokenizerLowerCase(folder)
                           ?? (Path.GetFileName(vocabPath) == "vocab.txt" && BaseModel.InferLowerCase(vocab));

        // Identity: SHA-256 of the checkpoint file, remembered by path/size/mtime in the default cache.
        var hashWatch = Stopwatch.StartNew();
        var index = new WeightCache();
        string? sha = index.TryGetSourceHash(weightsPath, "checkpoint");
        if (sha is null)
        {
            using (var s = File.OpenRead(weightsPath)) sha = Convert.ToHexStringLower(SHA256.HashData(s));
            index.RememberSourceHash(weightsPath, "checkpoint", sha);
        }
        hashWatch.Stop();

        // Read once now to validate (and to learn whether there is a pooler); later loads read the file again.
        var importWatch = Stopwatch.StartNew();
        var notes = new List<string>();
        using (var probe = ReadCheckpoint(weightsPath, config, notes))
        {
            HasPooler = probe.ContainsKey("pooler.dense.weight") || probe.ContainsKey("pooler.dense.bias");
            Validate(weightsPath, config, HasPooler, probe, notes);
        }
        importWatch.Stop();

        _weightsPath = weightsPath;
        Origin = folder;
        Sha256 = sha;
        Config = config;
        Vocabulary = new VocabularyFile(vocab, Path.GetFileName(vocabPath), doLowerCase);
        Notes = notes;
        PrepareStats = new BaseModelLoadStats
        {
            Hash = hashWatch.Elapsed, Import = importWatch.Elapsed, Total = stopwatch.Elapsed,
        };
    }

    /// <inheritdoc/>
    public BaseModelKind Kind => BaseModelKind.Folder;

    /// <inheritdoc/>
    public string Origin { get; }

    /// <inheritdoc/>
    public string? OriginVocabPath => null;

    /// <inheritdoc/>
    public string Description => Origin;

    /// <inheritdoc/>
    public string Sha256 { get; }

    /// <inheritdoc/>
    public EncoderConfig Config { get; }

    /// <inheritdoc/>
    public bool HasPooler { get; }

    /// <inheritdoc/>
    public VocabularyFile Vocabulary { get; }

    /// <inheritdoc/>
    public string? TokenizerFolder => Origin;

    /// <summary>
    /// sentence-transformers writes <c>modules.json</c> or <c>config_sentence_transformers.json</c> beside the model;
    /// looked up at each call, as a folder may gain them.
    /// </summary>
    public bool IsSentenceEmbedding => File.Exists(Path.Combine(Origin, "modules.json"))
                                       || File.Exists(Path.Combine(Origin, "config_sentence_transformers.json"));

    /// <inheritdoc/>
    public string? CacheDirectory => null;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes { get; }

    /// <inheritdoc/>
    public BaseModelLoadStats PrepareStats { get; }

    /// <inheritdoc/>
    public Dictionary<string, Onnx.FloatTensor> ReadWeights(out BaseModelLoadStats stats)
    {
        var stopwatch = Stopwatch.StartNew();
        using var checkpoint = ReadCheckpoint(_weightsPath, Config, []);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (n, _) in HfBertLayout.Expected(Config, HasPooler))
            if (checkpoint.Remove(n, out var t)) result.Add(n, t);
        try
        {
            stats = new BaseModelLoadStats { Import = stopwatch.Elapsed };
            return Onnx.TorchWeights.ToManaged(result);
        }
        finally
        {
            foreach (var t in result.Values) t.Dispose();
        }
    }

    /// <summary>Missing or mis-shaped tensors are errors; tensors the encoder does not use become a note.</summary>
    private static void Validate(string weightsPath, EncoderConfig config, bool hasPooler, Checkpoint probe,
                                 List<string> notes)
    {
        var expected = HfBertLayout.Expected(config, hasPooler);
        var problems = HfBertLayout.Compare(expected, probe.ToDictionary(kv => kv.Key, kv => kv.Value.shape));
        var unexpected = problems.Where(p => p.StartsWith("unexpected ", StringComparison.Ordinal)).ToList();
        var errors = problems.Except(unexpected).ToList();
        if (errors.Count > 0)
            throw new InvalidDataException(
                $"Checkpoint '{weightsPath}' does not match its config.json ({config.NumHiddenLayers} layers, hidden " +
                $"{config.HiddenSize}); {errors.Count} problem(s):{Environment.NewLine}  " +
                string.Join(Environment.NewLine + "  ", errors.Concat(unexpected)));
        if (unexpected.Count > 0)
            notes.Add($"Ignored {unexpected.Count} tensor(s) the encoder does not use: " +
                      $"{string.Join("; ", unexpected)}.");
    }

    private static bool? ReadTokenizerLowerCase(string folder)
    {
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path))?["do_lower_case"] is JsonValue v
                   && v.TryGetValue<bool>(out bool b) ? b : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// Tensors of a checkpoint file renamed to encoder names and converted to float32; disposing frees those left.
    /// </summary>
    private sealed class Checkpoint : Dictionary<string, Tensor>, IDisposable
    {
        public Checkpoint() : base(StringComparer.Ordinal) { }

        public void Dispose()
        {
            foreach (var t in Values) t.Dispose();
            Clear();
        }
    }

    private static Checkpoint ReadCheckpoint(string path, EncoderConfig config, List<string> notes)
    {
        var raw = new List<(string Name, Tensor Tensor)>();
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var (n, t) in SafeTensors.Read(path, verifyHash: false)) raw.Add((n, t));
        }
        else
        {
            // PyTorch pickles are the one format the library's own SafeTensors cannot read.
            Hashtable table;
            try { table = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(path); }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new InvalidDataException($"'{path}' could not be read as a PyTorch state dict: {e.Message}", e);
            }
            foreach (DictionaryEntry entry in table)
                if (entry.Key is string n && entry.Value is Tensor t) raw.Add((n, t));
        }

        var checkpoint = new Checkpoint();
        var ignored = new List<string>();
        foreach (var (n, t) in raw)
        {
            string? mapped = CheckpointNames.ToEncoderName(n, config.Architecture);
            if (mapped is null || checkpoint.ContainsKey(mapped))
            {
                if (!n.EndsWith("position_ids", StringComparison.Ordinal)) ignored.Add(n);
                t.Dispose();
                continue;
            }
            if (t.dtype == ScalarType.Float32) checkpoint.Add(mapped, t);
            else
            {
                checkpoint.Add(mapped, t.to_type(ScalarType.Float32));
                t.Dispose();
            }
        }
        if (ignored.Count > 0)
            notes.Add($"Ignored {ignored.Count} checkpoint tensor(s) outside the encoder: " +
                      $"{string.Join(", ", ignored.Take(10))}{(ignored.Count > 10 ? ", ..." : "")}.");
        return checkpoint;
    }
}
