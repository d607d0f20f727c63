// LearningCurves: dev accuracy against the number of labelled training rows, for the stage at its defaults (LoRA), the
// linear probe and full fine-tuning at their defaults, and ML.NET's FeaturizeText + SdcaMaximumEntropy on the same
// rows. Issue 21's question: do the defaults beat bag-of-words on the few hundred rows many ML.NET users have?
//
//   dotnet run -c Release --project benchmarks/LearningCurves [-- options]
//
// Options:
//   --datasets <list>   sst2 (binary, phrases -> full sentences), mrpc (sentence pairs), uci6 (6 classes: the source
//                       site x sentiment of shared/data/uci_sentiment). Default: all three.
//   --rows <list>       training rows drawn (seeded shuffle; smaller sizes are prefixes of larger ones); a size above
//                       what the set has uses all its rows. Default 100,300,1000,3000.
//   --arms <list>       lora, sdca, probe, full. Default: all four.
//   --seeds <list>      MLContext and subsample seeds. Default 1.
//   --set <K=V>         sets a stage option by name for the neural arms (repeatable), e.g. --set RefitOnAllRows=true;
//                       for experiments with the defaults. Results are kept apart by a tag (--tag).
//   --tag <name>        label of this configuration in the results (default "defaults").
//   --out <folder>      results.jsonl (appended; finished runs are skipped on a rerun), results.md and one PNG per
//                       dataset. Default artifacts/learning-curves.
//
// The data is read from shared/data next to the repository; without it the program says so and does nothing.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.Methods.Full;
using Microsoft.ML.Peft.Methods.LinearProbe;
using Microsoft.ML.Peft.MLNet;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var opt = new Dictionary<string, string>();
var sets = new List<(string Key, string Value)>();
for (int i = 0; i + 1 < args.Length; i += 2)
{
    if (args[i] == "--set")
    {
        var kv = args[i + 1].Split('=', 2);
        sets.Add((kv[0], kv[1]));
    }
    else opt[args[i].TrimStart('-')] = args[i + 1];
}
string[] List(string key, string fallback) =>
    opt.GetValueOrDefault(key, fallback).Split(',', StringSplitOptions.RemoveEmptyEntries);
var datasets = List("datasets", "sst2,mrpc,uci6");
var sizes = List("rows", "100,300,1000,3000").Select(int.Parse).ToArray();
var arms = List("arms", "lora,sdca,probe,full");
var seeds = List("seeds", "1").Select(int.Parse).ToArray();
string tag = opt.GetValueOrDefault("tag", "defaults");
string outDir = opt.GetValueOrDefault("out", Path.Combine("artifacts", "learning-curves"));
Directory.CreateDirectory(outDir);
string resultsPath = Path.Combine(outDir, "results.jsonl");

Console.WriteLine(Machine.Describe());
var done = Results.Load(resultsPath);
foreach (var name in datasets)
{
    var data = Dataset.Load(name);
    if (data is null)
    {
        Console.WriteLine($"Data for '{name}' not found (shared/data next to the repository). Skipped.");
        continue;
    }
    Console.WriteLine($"{name}: {data.Train.Count} training rows, {data.Dev.Count} dev rows, {data.Classes} classes, "
        + $"majority class {data.Majority:F3} of dev");
    foreach (int seed in seeds)
        foreach (int size in sizes)
            foreach (var arm in arms)
            {
                int rows = Math.Min(size, data.Train.Count);
                string armTag = arm == "sdca" ? "sdca" : tag;
                bool finished = done.Any(r => r.Dataset == name && r.Rows == rows && r.Arm == arm && r.Seed == seed
                    && r.Tag == armTag);
                if (finished) continue;
                var result = Runner.Run(data, arm, rows, seed, armTag, sets);
                Console.WriteLine($"  {name} {rows,5} rows seed {seed} {arm,-5} [{armTag}] "
                    + $"accuracy {result.Accuracy:F3} macro {result.MacroAccuracy:F3} "
                    + $"in {result.Seconds:F0} s, peak RSS {result.PeakRssBytes >> 20} MiB {result.Plan}");
                Results.Append(resultsPath, result);
                done.Add(result);
            }
}
Results.Report(done, outDir);
return 0;

/// <summary>One training run's outcome.</summary>
internal sealed record RunResult(
    string Dataset, int Rows, string Arm, int Seed, string Tag, double Accuracy, double MacroAccuracy, double Majority,
    double Seconds, string Plan, int Classes, long PeakRssBytes = 0);

/// <summary>A labelled row: one or two texts.</summary>
internal sealed class Row
{
    public string Label { get; set; } = "";
    public string Text { get; set; } = "";
    public string Text2 { get; set; } = "";
}

/// <summary>A benchmark set: training rows in a fixed shuffled order and dev rows.</summary>
internal sealed record Dataset(string Name, List<Row> Train, List<Row> Dev, bool Pair)
{
    public int Classes => Train.Select(r => r.Label).Distinct().Count();

    public double Majority
    {
        get
        {
            var top = Train.GroupBy(r => r.Label).MaxBy(g => g.Count())!.Key;
            return Dev.Count(r => r.Label == top) / (double)Dev.Count;
        }
    }

    public static Dataset? Load(string name)
    {
        string folder = name == "uci6" ? "uci_sentiment" : name;
        string? dir = DataLocator.Find(folder);
        if (dir is null) return null;
        bool pair = name == "mrpc";
        List<Row> Read(string file) => File.ReadLines(Path.Combine(dir, file)).Skip(1)
            .Select(l => l.Split('\t'))
            .Select(f => new Row
            {
                // uci6: six classes, the review site crossed with the sentiment (e.g. "yelp:1").
                Label = name == "uci6" ? $"{f[2]}:{f[0]}" : f[0],
                Text = f[1], Text2 = pair ? f[2] : "",
            }).ToList();
        return new Dataset(name, Read("train.tsv"), Read("dev.tsv"), pair);
    }

    /// <summary>The first <paramref name="rows"/> rows of a seeded shuffle of the training rows.</summary>
    public List<Row> Sample(int rows, int seed)
    {
        var copy = Train.ToArray();
        new Random(seed).Shuffle(copy);
        return copy.Take(rows).ToList();
    }
}

/// <summary>Trains one arm on a sample and scores the dev rows.</summary>
internal static class Runner
{
    public static RunResult Run(Dataset data, string arm, int rows, int seed, string tag, List<(string, string)> sets)
    {
        var ml = new MLContext(seed);
        if (Environment.GetEnvironmentVariable("LEARNING_CURVES_VERBOSE") == "1")
            ml.Log += (_, e) =>
            {
                if (e.Source.Contains("Peft", StringComparison.Ordinal)) Console.WriteLine(e.Message);
            };
        var train = ml.Data.LoadFromEnumerable(data.Sample(rows, seed));
        var dev = ml.Data.LoadFromEnumerable(data.Dev);
        // Runs share this process: the kernel's peak is reset so that each run's own peak can be read (Linux).
        Microsoft.ML.Peft.Runtime.ProcessMemory.TryResetPeak();
        var clock = Stopwatch.StartNew();
        string plan = "";
        ITransformer model;
        if (arm == "sdca")
        {
            // Pairs: each sentence featurized on its own, the two vectors side by side.
            var featurize = ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.Transforms.Text.FeaturizeText("F1", "Text"))
                .Append(ml.Transforms.Text.FeaturizeText("F2", data.Pair ? "Text2" : "Text"));
            string[] features = data.Pair ? ["F1", "F2"] : ["F1"];
            model = featurize.Append(ml.Transforms.Concatenate("Features", features))
                .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()).Fit(train);
        }
        else
        {
            var options = new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text",
                Sentence2ColumnName = data.Pair ? "Text2" : null,
                Method = arm switch
                {
                    "lora" => null,
                    "probe" => new LinearProbeConfig(),
                    "full" => new FullFineTuningConfig(),
                    _ => throw new ArgumentException($"Unknown arm '{arm}': use lora, sdca, probe or full."),
                },
            };
            foreach (var (key, value) in sets) Set(options, key, value);
            var stage = ml.Peft().TextClassification(options);
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(stage).Fit(train);
            plan = fitted.LastTransformer.TrainingReport?.Plan?.ToString() ?? "";
            model = fitted;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(dev));
        long peak = Microsoft.ML.Peft.Runtime.ProcessMemory.PeakSinceReset() ?? 0;
        (model as IDisposable)?.Dispose();
        return new RunResult(data.Name, rows, arm, seed, tag, metrics.MicroAccuracy, metrics.MacroAccuracy,
            data.Majority, seconds, plan, data.Classes, peak);
    }

    private static void Set(PeftTextOptions options, string key, string value)
    {
        var property = options.GetType().GetProperty(key) ?? throw new ArgumentException($"No stage option '{key}'.");
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        property.SetValue(options, type.IsEnum ? Enum.Parse(type, value, ignoreCase: true)
            : Convert.ChangeType(value, type, CultureInfo.InvariantCulture));
    }
}

/// <summary>The results file, the Markdown table and the charts.</summary>
internal static class Results
{
    public static List<RunResult> Load(string path) => File.Exists(path)
        ? File.ReadLines(path).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<RunResult>(l)!).ToList()
        : [];

    public static void Append(string path, RunResult result) =>
        File.AppendAllText(path, JsonSerializer.Serialize(result) + "\n");

    public static void Report(List<RunResult> results, string outDir)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Machine.Describe()).AppendLine();
        sb.AppendLine("| dataset | rows | majority | arm (configuration) | accuracy | macro accuracy | "
            + "vs SDCA | seconds | peak RSS (MiB) | runs |");
        sb.AppendLine("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var g in results.GroupBy(r => (r.Dataset, r.Rows, r.Arm, r.Tag))
                     .OrderBy(g => g.Key.Dataset).ThenBy(g => g.Key.Rows).ThenBy(g => g.Key.Arm).ThenBy(g => g.Key.Tag))
        {
            double acc = g.Average(r => r.Accuracy);
            var sdca = results.Where(r => r.Dataset == g.Key.Dataset && r.Rows == g.Key.Rows && r.Arm == "sdca")
                .ToList();
            string vs = g.Key.Arm == "sdca" || sdca.Count == 0
                ? ""
                : $"{100 * (acc - sdca.Average(r => r.Accuracy)):+0.0;-0.0}";
            sb.AppendLine($"| {g.Key.Dataset} | {g.Key.Rows:N0} | {g.First().Majority:F3} | "
                + $"{g.Key.Arm} ({g.Key.Tag}) | {acc:F3} | "
                + $"{g.Average(r => r.MacroAccuracy):F3} | {vs} | {g.Average(r => r.Seconds):F0} | "
                + $"{(g.Max(r => r.PeakRssBytes) is > 0 and var p ? (p >> 20).ToString("N0") : "-")} | {g.Count()} |");
        }
        File.WriteAllText(Path.Combine(outDir, "results.md"), sb.ToString());
        Console.WriteLine(sb);
        foreach (var set in results.GroupBy(r => r.Dataset)) Chart(set.Key, set.ToList(), outDir);
    }

    private static void Chart(string dataset, List<RunResult> runs, string outDir)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int color = 0;
        foreach (var series in runs.GroupBy(r => (r.Arm, r.Tag)).OrderBy(g => g.Key.Arm))
        {
            var points = series.GroupBy(r => r.Rows).OrderBy(g => g.Key).ToArray();
            double[] xs = points.Select(p => Math.Log10(p.Key)).ToArray();
            double[] ys = points.Select(p => p.Average(r => r.Accuracy)).ToArray();
            var line = plt.Add.Scatter(xs, ys);
            line.Color = palette.GetColor(color++);
            line.LegendText = series.Key.Arm == "sdca"
                ? "FeaturizeText + SDCA"
                : $"{series.Key.Arm} ({series.Key.Tag})";
            line.MarkerSize = 8;
        }
        var majority = plt.Add.HorizontalLine(runs[0].Majority);
        majority.LinePattern = ScottPlot.LinePattern.Dashed;
        majority.Color = ScottPlot.Colors.Gray;
        majority.LegendText = "majority class";
        int[] ticks = runs.Select(r => r.Rows).Distinct().Order().ToArray();
        plt.Axes.Bottom.SetTicks(ticks.Select(t => Math.Log10(t)).ToArray(),
            ticks.Select(t => t.ToString("N0")).ToArray());
        plt.XLabel("training rows (log scale)");
        plt.YLabel("dev accuracy");
        plt.Title($"{dataset}: stage defaults vs bag-of-words");
        plt.ShowLegend(ScottPlot.Alignment.LowerRight);
        plt.SavePng(Path.Combine(outDir, $"{dataset}.png"), 900, 600);
    }
}

/// <summary>The CPU this ran on and its relevant flags, for every report.</summary>
internal static class Machine
{
    public static string Describe() =>
        $"CPU: {CpuInfo.Name()} ({Environment.ProcessorCount} logical cores; flags: {CpuInfo.RelevantFlags()})";
}
