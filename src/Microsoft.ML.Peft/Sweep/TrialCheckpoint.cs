using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// <c>trials.jsonl</c> in the checkpoint folder: one JSON object per finished (succeeded or failed) trial, appended and
/// flushed as each trial ends. A resumed sweep replays the tuner and takes a proposal's result from here when its
/// parameters were already run (matched by their JSON), so with the same seed it redoes nothing that finished.
/// </summary>
internal sealed class TrialCheckpoint
{
    public const string FileName = "trials.jsonl";
    public const string BestModelFileName = "best-model.zip";
    private readonly string _path;
    private readonly Dictionary<string, Queue<TrialResult>> _byParameters = new(StringComparer.Ordinal);

    public TrialCheckpoint(string folder)
    {
        Directory.CreateDirectory(folder);
        Folder = folder;
        _path = Path.Combine(folder, FileName);
        if (!File.Exists(_path)) return;
        foreach (var line in File.ReadAllLines(_path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            TrialResult r;
            try { r = Parse(line); }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException
                or NullReferenceException) { continue; } // a torn last line
            var key = r.Parameters.ToJson();
            if (!_byParameters.TryGetValue(key, out var q)) _byParameters[key] = q = new Queue<TrialResult>();
            q.Enqueue(r);
        }
    }

    public string Folder { get; }

    public int Count => _byParameters.Values.Sum(q => q.Count);

    public bool TryTake(TrialParameters parameters, out TrialResult result)
    {
        if (_byParameters.TryGetValue(parameters.ToJson(), out var q) && q.Count > 0)
        {
            result = q.Dequeue();
            return true;
        }
        result = null!;
        return false;
    }

    public void Append(TrialResult r)
    {
        var node = new JsonObject
        {
            ["id"] = r.Id,
            ["parameters"] = JsonNode.Parse(r.Parameters.ToJson()),
            ["status"] = r.Status.ToString(),
            ["metric"] = double.IsFinite(r.Metric) ? r.Metric : null,
            ["validationLoss"] = double.IsFinite(r.ValidationLoss) ? r.ValidationLoss : null,
            ["trainableParameters"] = r.TrainableParameters,
            ["durationSeconds"] = r.Duration.TotalSeconds,
            ["peakWorkingSetBytes"] = r.PeakWorkingSetBytes,
            ["error"] = r.Error,
            ["epochLosses"] = new JsonArray(
                r.EpochLosses.Select(l => (JsonNode?)(double.IsFinite(l) ? JsonValue.Create(l) : null)).ToArray()),
        };
        using var stream = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
        using var writer = new StreamWriter(stream);
        writer.Write(node.ToJsonString() + "\n");
        writer.Flush();
        stream.Flush(flushToDisk: true);
    }

    private static TrialResult Parse(string line)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        return new TrialResult
        {
            Id = (int)o["id"]!,
            Parameters = TrialParameters.FromJson(o["parameters"]!.ToJsonString()),
            Status = Enum.Parse<TrialStatus>((string)o["status"]!),
            Metric = o["metric"] is { } m ? (double)m : double.NaN,
            ValidationLoss = o["validationLoss"] is { } v ? (double)v : double.NaN,
            TrainableParameters = (long)o["trainableParameters"]!,
            Duration = TimeSpan.FromSeconds((double)o["durationSeconds"]!),
            PeakWorkingSetBytes = (long)o["peakWorkingSetBytes"]!,
            Error = (string?)o["error"],
            // Older checkpoints have no epoch losses; a null entry is an epoch whose loss was not finite.
            EpochLosses = o["epochLosses"] is JsonArray a
                ? a.Select(n => n is null ? double.PositiveInfinity : (double)n).ToArray()
                : [],
            FromCheckpoint = true,
        };
    }
}
