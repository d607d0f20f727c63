using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// On-disk cache of converted encoder weights, keyed by the SHA-256 of the source bytes (the ONNX model):
/// <c>&lt;root&gt;/&lt;sha256&gt;/model.safetensors</c> (Hugging Face names, [out, in] Linear weights, a data checksum
/// in its metadata) and <c>&lt;root&gt;/&lt;sha256&gt;/config.json</c> (Hugging Face config). The root is
/// <c>$PEFT_CACHE_DIR</c>, else <c>$XDG_CACHE_HOME/Microsoft.ML.Peft</c>, else <c>~/.cache/Microsoft.ML.Peft</c>.
/// </summary>
/// <remarks>
/// Files are written to a temporary name and renamed, config.json last, so an entry is either complete or absent to
/// readers (concurrent writers of the same entry write identical bytes). A damaged entry (truncated, bad header,
/// checksum mismatch, unreadable config) is reported by <see cref="TryLoadWeights"/> and rebuilt by the caller.
/// The SHA-256 of a source file is remembered in <c>&lt;root&gt;/sources/</c> under its path, size and modification
/// time, so a cached load does not have to read and hash the source again.
/// </remarks>
internal sealed class WeightCache
{
    public const string EnvironmentVariable = "PEFT_CACHE_DIR";
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    private const string FormatVersion = "1";

    public string Root { get; }

    public WeightCache(string? root = null) => Root = Path.GetFullPath(root ?? DefaultRoot());

    /// <summary>The cache root used when none is given.</summary>
    public static string DefaultRoot()
    {
        string? env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env)) return env;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "Microsoft.ML.Peft");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (string.IsNullOrEmpty(home)) home = Path.GetTempPath();
        return Path.Combine(home, ".cache", "Microsoft.ML.Peft");
    }

    public string EntryDirectory(string sha256) => Path.Combine(Root, sha256);
    public string WeightsPath(string sha256) => Path.Combine(EntryDirectory(sha256), WeightsFile);
    public string ConfigPath(string sha256) => Path.Combine(EntryDirectory(sha256), ConfigFile);

    // ---- Source hashes ----

    private string SourceIndexPath(string path, long length, DateTime lastWriteUtc, string part)
    {
        string key = $"{Path.GetFullPath(path)}\n{length}\n{lastWriteUtc.Ticks}\n{part}";
        string name = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..32];
        return Path.Combine(Root, "sources", name + ".sha256");
    }

    /// <summary>
    /// The remembered SHA-256 of <paramref name="part"/> of the file at <paramref name="path"/>, if it has not changed
    /// since.
    /// </summary>
    public string? TryGetSourceHash(string path, string part)
    {
        try
        {
            var info = new FileInfo(path);
            string index = SourceIndexPath(path, info.Length, info.LastWriteTimeUtc, part);
            if (!File.Exists(index)) return null;
            string text = File.ReadAllText(index).Trim();
            return IsSha256(text) ? text : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// Remembers a source hash; failures to write are ignored (the hash is simply recomputed next time).
    /// </summary>
    public void RememberSourceHash(string path, string part, string sha256)
    {
        try
        {
            var info = new FileInfo(path);
            AtomicFile.WriteText(SourceIndexPath(path, info.Length, info.LastWriteTimeUtc, part), sha256);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    public static bool IsSha256(string text) => text.Length == 64 && text.All(Uri.IsHexDigit);

    // ---- Entries ----

    /// <summary>
    /// Reads an entry's config and whether its weights include a pooler, checking the weights header (not the data).
    /// </summary>
    public bool TryReadEntry(string sha256, out EncoderConfig? config, out bool hasPooler, out string? problem)
    {
        config = null;
        hasPooler = false;
        problem = null;
        string configPath = ConfigPath(sha256), weightsPath = WeightsPath(sha256);
        if (!File.Exists(configPath) || !File.Exists(weightsPath))
        {
            problem = "no cache entry";
            return false;
        }
        try
        {
            config = EncoderConfig.FromFile(configPath);
            var header = SafeTensors.ReadHeader(weightsPath);
            if (!header.Metadata.TryGetValue("peft_cache_format", out var format) || format != FormatVersion)
                throw new InvalidDataException($"cache format '{format}' is not '{FormatVersion}'");
            if (!header.Metadata.TryGetValue("peft_source_sha256", out var source)
                || !string.Equals(source, sha256, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException("the weights belong to another source");
            hasPooler = header.Entries.Any(e => e.Name == "pooler.dense.weight");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException
            or FormatException)
        {
            problem = $"cache entry {EntryDirectory(sha256)} is damaged: {e.Message}";
            config = null;
            return false;
        }
    }

    /// <summary>
    /// Reads an entry's weights, verifying the data checksum; null (with the reason) when missing or damaged.
    /// </summary>
    public Dictionary<string, FloatTensor>? TryLoadWeights(string sha256, out string? problem)
    {
        problem = null;
        string weightsPath = WeightsPath(sha256);
        if (!File.Exists(weightsPath))
        {
            problem = "no cache entry";
            return null;
        }
        try
        {
            return SafeTensors.ReadFloats(weightsPath, verifyHash: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException
            or NotSupportedException)
        {
            problem = $"cache entry {EntryDirectory(sha256)} is damaged: {e.Message}";
            return null;
        }
    }

    /// <summary>Stores an entry (weights first, config last, each atomically).</summary>
    public void Store(string sha256, EncoderConfig config, IEnumerable<KeyValuePair<string, FloatTensor>> weights,
        string sourceName)
    {
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["peft_cache_format"] = FormatVersion,
            ["peft_source_sha256"] = sha256,
            ["peft_source"] = sourceName,
        };
        SafeTensors.WriteAtomic(WeightsPath(sha256), weights, metadata);
        AtomicFile.WriteText(ConfigPath(sha256), config.ToJson());
    }
}
