// MethodComparison: every PEFT method this library knows, full fine-tuning and ML.NET's FeaturizeText + SDCA, on the
// same training subsample and token budget (rows x epochs), in the manner of the review by Xu et al. (arXiv
// 2312.12148): trainable parameters, dev metric vs full fine-tuning, peak memory. Writes a Markdown table and a PNG
// chart.
//
//   dotnet run -c Release --project benchmarks/MethodComparison [-- options]
//
// Options:
//   --task <t>            classification (default; SST-2) or regression (STS-B, Pearson correlation and RMSE)
//   --dataset <name>      folder under shared/data (default sst2 for classification, stsb for regression); the TSV
// needs a                         header with Label and Text or Sentence1 (and optionally Sentence2) columns
//   --data <folder>       folder holding train.tsv and dev.tsv (default: shared/data/<dataset> found by walking up from
// here)
//   --methods <list>      method names from PeftMethodConfig.KnownMethods plus sdca (default: all of them)
//   --preset lora-vs-full the former LoraVsFull benchmark: lora, full and sdca, LoRA at 5e-4 and 2e-3, full at 3e-5 and
// 5e-5
//   --method-options <m=json>  options for one method as the JSON object PeftMethodConfig.FromJson reads (repeatable),
//                         e.g. --method-options 'adalora={"OrthRegWeight":0.1}'; the method's defaults otherwise
//   --lr <a,b,...>        learning rates for every neural method, one run each (default: each method's
// DefaultLearningRate)
//   --method-lr <m=a/b>   learning rates for one method (repeatable; overrides --lr for it), e.g. --method-lr
// lora=5e-4/2e-3
//   --train-rows <n>      training rows drawn (seeded shuffle) from train.tsv (default 16000)
//   --dev-rows <n>        dev rows scored, seeded sample (default 0: all)
//   --epochs <n>          passes over the training rows (default: unset, the stage's own plan from the row count, with
//                         its held-out validation and early stopping, as a user gets it)
//   --max-length <n>      longest input in tokens (default 64)
//   --batch-size <n>      rows per batch (default: unset, the stage's plan: 16 below 1,000 rows, else 32)
//   --threads <n>         libtorch threads in each child (OMP_NUM_THREADS; default 1; 0 keeps libtorch's default).
//                         On cores shared with other work, libtorch's default (one OpenMP thread per core) ran 5x
//                         slower than one thread here: OpenMP threads spin waiting for each other.
//   --seed <n>            MLContext seed, libtorch seed and subsample seed (default 1)
//   --out <folder>        where the table (.md), the results (.json) and the chart (.png) go (default
// artifacts/method-comparison)
//   --quick               smoke run: 300 training rows, 1 epoch, 200 dev rows, first learning rate of each method
//
// Each run happens in a child process (this program re-launched with --method NAME) because peak RSS (VmHWM in
// /proc/self/status) is process-wide and never goes down; each child prints one JSON line on stdout, also when it
// fails.
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Transforms.Text;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

Options opt;
try
{
    opt = Options.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 2;
}

if (opt.Replot is { } json)
    return Parent.Replot(json);

string? dataDir = opt.DataDir ?? DataLocator.Find(opt.DatasetName);
if (dataDir is null || !File.Exists(Path.Combine(dataDir, "train.tsv"))
    || !File.Exists(Path.Combine(dataDir, "dev.tsv")))
{
    Console.WriteLine(dataDir is null
        ? $"Data not found: no shared/data/{opt.DatasetName} folder above the current directory or the program's " +
            "folder. Pass --data <folder with train.tsv and dev.tsv>. Nothing to benchmark."
        : $"Data not found: '{dataDir}' has no train.tsv and dev.tsv. Nothing to benchmark.");
    return 0;
}

if (opt.ChildMethod is { } method)
    return Child.Run(opt, method, dataDir);
return Parent.Run(opt, dataDir);

/// <summary>Command-line options; the same parser serves the parent and its children.</summary>
internal sealed record Options
{
    public const string Sdca = "sdca";
    public const string Full = "full";

    public bool Regression { get; init; }
    public string? Dataset { get; init; }
    public string DatasetName => Dataset ?? (Regression ? "stsb" : "sst2");
    public string? DataDir { get; init; }
    public int TrainRows { get; init; } = 16000;
    public int DevRows { get; init; }
    public int? Epochs { get; init; }
    public int MaxLength { get; init; } = 64;
    public int? BatchSize { get; init; }
    public double[]? LearningRates { get; init; }
    public Dictionary<string, double[]> MethodLearningRates { get; init; } = [];
    public Dictionary<string, string> MethodOptions { get; init; } = [];
    public int Threads { get; init; } = 1;
    public string[] Methods { get; init; } = DefaultMethods();
    public int Seed { get; init; } = 1;
    public bool Quick { get; init; }
    public string OutDir { get; init; } = Path.Combine("artifacts", "method-comparison");
    public string? Replot { get; init; }
    public string? ChildMethod { get; init; }
    public double? ChildLearningRate { get; init; }

    /// <summary>Full fine-tuning first (the reference), then every other known method by name, then SDCA.</summary>
    public static string[] DefaultMethods() =>
        [Full, .. PeftMethodConfig.KnownMethods.Where(m => m != Full).Order(StringComparer.Ordinal), Sdca];

    /// <summary>The learning rates to run for a method: --method-lr, else --lr, else null (the method's
    /// default).</summary>
    public double?[] RatesFor(string method) =>
        method == Sdca ? [null]
        : MethodLearningRates.TryGetValue(method, out var r) ? r.Select(x => (double?)x).ToArray()
        : LearningRates is { } all ? all.Select(x => (double?)x).ToArray()
        : [null];

    public static Options Parse(string[] args)
    {
        var o = new Options();
        bool rowsSet = false, epochsSet = false, devSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i]
                : throw new ArgumentException($"Option '{args[i]}' needs a value.");
            int NextInt(int min)
            {
                string name = args[i], s = Next();
                return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
                    ? v : throw new ArgumentException($"Option '{name}' needs an integer >= {min}, got '{s}'.");
            }
            int? NextIntOrDefault(int min)
            {
                if (i + 1 < args.Length && args[i + 1] == "default") { i++; return null; }
                return NextInt(min);
            }
            double[] Rates(string name, string s, char sep) =>
                s.Split(sep, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
                    double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0
                        ? v : throw new ArgumentException($"Option '{name}' needs positive numbers, got '{x}'."))
                            .ToArray();
            string CheckMethod(string m) => m == Sdca || PeftMethodConfig.KnownMethods.Contains(m) ? m
                : throw new ArgumentException($"Unknown method '{m}'. Known: {string.Join(",", DefaultMethods())}.");
            switch (args[i])
            {
                case "--task":
                    o = o with { Regression = Next() switch
                    {
                        "classification" => false, "regression" => true,
                        var t => throw new ArgumentException("Option '--task' takes classification or regression, " +
                            $"got '{t}'."),
                    } };
                    break;
                case "--dataset": o = o with { Dataset = Next() }; break;
                case "--data": o = o with { DataDir = Path.GetFullPath(Next()) }; break;
                case "--train-rows": o = o with { TrainRows = NextInt(10) }; rowsSet = true; break;
                case "--dev-rows": o = o with { DevRows = NextInt(0) }; devSet = true; break;
                case "--epochs": o = o with { Epochs = NextIntOrDefault(1) }; epochsSet = true; break;
                case "--max-length": o = o with { MaxLength = NextInt(8) }; break;
                case "--batch-size": o = o with { BatchSize = NextIntOrDefault(1) }; break;
                case "--lr": { string n = args[i]; o = o with { LearningRates = Rates(n, Next(), ',') }; break; }
                case "--method-lr":
                {
                    string n = args[i], s = Next();
                    int eq = s.IndexOf('=');
                    if (eq <= 0) throw new ArgumentException("Option '--method-lr' takes method=rate[/rate...], got " +
                        $"'{s}'.");
                    o.MethodLearningRates[CheckMethod(s[..eq])] = Rates(n, s[(eq + 1)..], '/');
                    break;
                }
                case "--methods":
                    o = o with { Methods = Next().Split(',',
                        StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(CheckMethod)
                        .Distinct().ToArray() };
                    if (o.Methods.Length == 0) throw new ArgumentException("Option '--methods' needs at least one " +
                        "method.");
                    break;
                case "--preset":
                    if (Next() != "lora-vs-full") throw new ArgumentException("Option '--preset' takes lora-vs-full.");
                    o = o with { Methods = ["lora", Full, Sdca] };
                    o.MethodLearningRates.TryAdd("lora", [5e-4, 2e-3]);
                    o.MethodLearningRates.TryAdd(Full, [3e-5, 5e-5]);
                    break;
                case "--threads": o = o with { Threads = NextInt(0) }; break;
                case "--seed": o = o with { Seed = NextInt(0) }; break;
                case "--out": o = o with { OutDir = Next() }; break;
                case "--quick": o = o with { Quick = true }; break;
                case "--replot": o = o with { Replot = Path.GetFullPath(Next()) }; break;
                case "--method-options":
                {
                    string s = Next();
                    int eq = s.IndexOf('=');
                    if (eq <= 0 || !s[(eq + 1)..].TrimStart().StartsWith('{'))
                        throw new ArgumentException($"Option '--method-options' takes method={{json}}, got '{s}'.");
                    o.MethodOptions[CheckMethod(s[..eq])] = s[(eq + 1)..];
                    break;
                }
                case "--method": o = o with { ChildMethod = CheckMethod(Next()) }; break;
                case "--child-lr":
                    { string n = args[i]; o = o with { ChildLearningRate = Rates(n, Next(), ',')[0] }; break; }
                case "-h" or "--help":
                    throw new ArgumentException("Usage: MethodComparison [--task classification|regression] " +
                        "[--dataset name] [--data <folder>] "
                        + "[--methods a,b,...] [--preset lora-vs-full] [--lr a,b] [--method-lr m=a/b] [--train-rows " +
                            "n] [--dev-rows n] [--epochs n] "
                        + "[--max-length n] [--batch-size n] [--threads n] [--seed n] [--out <folder>] " +
                            "[--quick]\nMethods: " + string.Join(",", DefaultMethods()));
                default: throw new ArgumentException($"Unknown option '{args[i]}'. Use --help.");
            }
        }
        if (o.Quick)
        {
            o = o with
            {
                TrainRows = rowsSet ? o.TrainRows : 300, Epochs = epochsSet ? o.Epochs : 1, 
                DevRows = devSet ? o.DevRows : 200,
                LearningRates = o.LearningRates is { } l ? [l[0]] : null,
                MethodLearningRates = o.MethodLearningRates.ToDictionary(kv => kv.Key, kv => new[] { kv.Value[0] }),
            };
        }
        return o;
    }

    /// <summary>The options a child needs to rebuild the same data and budget.</summary>
    public IEnumerable<string> SharedArgs(string dataDir) =>
    [
        "--task", Regression ? "regression" : "classification", "--data", dataDir, "--train-rows", Inv(TrainRows),
        "--dev-rows", Inv(DevRows),
        "--epochs", Epochs is { } e ? Inv(e) : "default", "--max-length", Inv(MaxLength),
        "--batch-size", BatchSize is { } b ? Inv(b) : "default", "--seed", Inv(Seed),
    ];

    /// <summary>How the budget reads in headers: "3 epoch(s)" or "the stage's plan".</summary>
    public string EpochText => Epochs is { } e ? $"{e} epoch(s)" : "default epochs (the stage's plan)";

    internal static string Inv(IFormattable v) => v.ToString(null, CultureInfo.InvariantCulture);
    internal static string Rate(double? lr) => lr?.ToString("0.#e0", CultureInfo.InvariantCulture) ?? "default";
}

/// <summary>A classification row (SST-2: Label, Text; pair tasks: Label, Sentence1, Sentence2).</summary>
internal sealed class ClassRow
{
    public string Label { get; set; } = "";
    public string Sentence1 { get; set; } = "";
    public string Sentence2 { get; set; } = "";
}

/// <summary>A regression row (STS-B: float Label, Sentence1, Sentence2).</summary>
internal sealed class RegressionRow
{
    public float Label { get; set; }
    public string Sentence1 { get; set; } = "";
    public string Sentence2 { get; set; } = "";
}

/// <summary>What one child measured; one JSON line on its stdout.</summary>
internal sealed record RunResult
{
    public string Method { get; init; } = "";
    public double? LearningRate { get; init; }
    public string? Error { get; init; }
    public string MetricName { get; init; } = "";
    public double Metric { get; init; }
    public double? SecondMetric { get; init; }
    public string? SecondMetricName { get; init; }
    public int TrainRows { get; init; }
    public int DevRows { get; init; }
    public int Epochs { get; init; }
    /// <summary>The epoch whose weights were kept (early stopping on the held-out rows), 0 when none was held
    /// out.</summary>
    public int BestEpoch { get; init; }
    /// <summary>The stage's plan as logged ("300 rows (45 held out): 19 epochs × 16 steps of 16 ..."), if
    /// any.</summary>
    public string? Plan { get; init; }
    /// <summary>The method's options when --method-options set them.</summary>
    public string? MethodOptions { get; init; }
    public long TrainableParameters { get; init; }
    public long TotalParameters { get; init; }
    public double? TrainablePercent { get; init; }
    public double? TokensPerSecond { get; init; }
    public long? TrainingTokens { get; init; }
    public double? FinalTrainLoss { get; init; }
    public double TrainingSeconds { get; init; }
    public double FitSeconds { get; init; }
    public long PeakRssAfterFitBytes { get; init; }
    public long PeakRssBytes { get; init; }
    public long ZipBytes { get; init; }

    public bool IsNeural => Method != Options.Sdca;
    public string Label => Method == Options.Sdca ? "FeaturizeText + SDCA"
        : $"{Method} lr {Options.Rate(LearningRate)}{(MethodOptions is { } o ? " " + o : "")}";
}

/// <summary>One benchmark run in its own process.</summary>
internal static class Child
{
    public const string ResultPrefix = "METHODCOMPARISON-RESULT ";

    public static int Run(Options opt, string method, string dataDir)
    {
        RunResult result;
        int code = 0;
        try
        {
            result = Measure(opt, method, dataDir);
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine(ex);
            var inner = ex;
            while (inner.InnerException is not null && inner is TargetInvocationException or AggregateException)
                inner = inner.InnerException;
            result = new RunResult { Method = method, LearningRate = opt.ChildLearningRate,
                Error = $"{inner.GetType().Name}: {inner.Message}", PeakRssBytes = PeakRss() };
            code = 1;
        }
        Console.Out.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        Console.Out.Flush();
        return code;
    }

    private static RunResult Measure(Options opt, string method, string dataDir)
    {
        var ml = new MLContext(seed: opt.Seed);
        var table = Tsv.Read(Path.Combine(dataDir, "train.tsv"));
        var devTable = Tsv.Read(Path.Combine(dataDir, "dev.tsv"));
        int trainCount = Math.Min(opt.TrainRows, table.Count);
        int devCount = opt.DevRows > 0 ? Math.Min(opt.DevRows, devTable.Count) : devTable.Count;
        bool pair = table.HasSentence2;
        IDataView Load(Tsv t, int count) => opt.Regression
            ? ml.Data.LoadFromEnumerable(t.Sample(count, opt.Seed).Select(r => new RegressionRow
            {
                Label = float.Parse(r.Label, CultureInfo.InvariantCulture), Sentence1 = r.Sentence1,
                Sentence2 = r.Sentence2,
            }).ToList())
            : ml.Data.LoadFromEnumerable(t.Sample(count, opt.Seed).ToList());
        var train = Load(table, trainCount);
        var dev = Load(devTable, devCount);
        string[] textColumns = pair ? ["Sentence1", "Sentence2"] : ["Sentence1"];

        var clock = Stopwatch.StartNew();
        ITransformer model;
        RunResult result;
        if (method == Options.Sdca)
        {
            var featurize =
                ml.Transforms.Text.FeaturizeText("Features", new TextFeaturizingEstimator.Options(), textColumns);
            long parameters;
            if (opt.Regression)
            {
                var fitted = featurize.Append(ml.Regression.Trainers.Sdca()).Fit(train);
                parameters = fitted.LastTransformer.Model.Weights.Count + 1;
                model = fitted;
            }
            else
            {
                var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(featurize)
                    .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()).Fit(train);
                VBuffer<float>[] weights = [];
                fitted.LastTransformer.Model.GetWeights(ref weights, out int classes);
                parameters = weights.Sum(w => (long)w.Length) + classes;
                model = fitted;
            }
            double fitSeconds = clock.Elapsed.TotalSeconds;
            result = new RunResult { TrainableParameters = parameters, TotalParameters = parameters,
                TrainingSeconds = fitSeconds, FitSeconds = fitSeconds };
        }
        else
        {
            string methodOptions = opt.MethodOptions.GetValueOrDefault(method, "{}");
            var config = PeftMethodConfig.FromJson($"{{\"method\":\"{method}\",\"options\":{methodOptions}}}");
            double? lr = opt.ChildLearningRate;
            void Fill(PeftTextOptions o)
            {
                o.LabelColumnName = "Label"; o.Sentence1ColumnName = "Sentence1"; 
                o.Sentence2ColumnName = pair ? "Sentence2" : null;
                o.Method = config; o.Epochs = opt.Epochs; o.BatchSize = opt.BatchSize; 
                o.LearningRate = lr; o.MaxSequenceLength = opt.MaxLength;
                o.LogEverySteps = 25;
                o.Progress = p =>
                    Console.Error.WriteLine($"  [{method}] {p} RSS {ProcStatus.Read("VmRSS:") / (1024 * 1024)} MiB");
            }
            // Fit draws new weights (adapters, head) from libtorch's global generator; seed it so runs repeat.
            TorchSharp.torch.manual_seed(opt.Seed);
            PeftTextTransformer stage;
            if (opt.Regression)
            {
                var o = new PeftTextRegressionOptions();
                Fill(o);
                var fitted = ml.Peft().TextRegression(o).Fit(train);
                stage = fitted;
                model = fitted;
            }
            else
            {
                var o = new PeftTextClassificationOptions();
                Fill(o);
                var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(o))
                    .Fit(train);
                stage = fitted.LastTransformer;
                model = fitted;
            }
            double fitSeconds = clock.Elapsed.TotalSeconds;
            var report = stage.TrainingReport
                ?? throw new InvalidOperationException("The fitted stage has no TrainingReport.");
            result = new RunResult
            {
                LearningRate = lr ?? config.DefaultLearningRate,
                TrainableParameters = stage.TrainableParameterCount, TotalParameters = stage.TotalParameterCount,
                TrainablePercent = stage.TrainablePercent, TokensPerSecond = report.TokensPerSecond,
                TrainingTokens = (long)Math.Round(report.TokensPerSecond * report.Duration.TotalSeconds),
                FinalTrainLoss = report.FinalTrainLoss, TrainingSeconds = report.Duration.TotalSeconds,
                FitSeconds = fitSeconds,
                MethodOptions = methodOptions == "{}" ? null : methodOptions, Epochs = report.EpochsRun,
                BestEpoch = report.BestValidationMetric is null ? 0 : report.BestEpoch,
                Plan = report.Plan?.ToString(),
            };
        }
        long hwmAfterFit = PeakRss();

        var scored = model.Transform(dev);
        if (opt.Regression)
        {
            var labels = scored.GetColumn<float>("Label").ToArray();
            var scores = scored.GetColumn<float>("Score").ToArray();
            var rmse = ml.Regression.Evaluate(scored, "Label", "Score").RootMeanSquaredError;
            result = result with { MetricName = "Pearson", Metric = Pearson(labels, scores), SecondMetricName = "RMSE",
                SecondMetric = rmse };
        }
        else
        {
            var metrics = ml.MulticlassClassification.Evaluate(scored, "Label");
            result = result with { MetricName = "accuracy", Metric = metrics.MicroAccuracy,
                SecondMetricName = "macro accuracy", SecondMetric = metrics.MacroAccuracy };
        }

        string folder =
            Path.Combine(Path.GetTempPath(), $"methodcomparison-{Environment.ProcessId}-{Guid.NewGuid():N}");
        long zipBytes;
        try
        {
            string zip = Path.Combine(folder, $"{method}.zip");
            PeftModelIO.SaveAtomic(ml, model, train.Schema, zip);
            zipBytes = new FileInfo(zip).Length;
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }

        return result with
        {
            Method = method, TrainRows = trainCount, DevRows = devCount, Epochs = method == Options.Sdca ? 0
                : result.Epochs,
            PeakRssAfterFitBytes = hwmAfterFit, PeakRssBytes = PeakRss(), ZipBytes = zipBytes,
        };
    }

    /// <summary>Pearson correlation of two equally long series.</summary>
    internal static double Pearson(IReadOnlyList<float> x, IReadOnlyList<float> y)
    {
        double mx = x.Average(v => (double)v), my = y.Average(v => (double)v), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
        }
        return sxx > 0 && syy > 0 ? sxy / Math.Sqrt(sxx * syy) : double.NaN;
    }

    /// <summary>Peak resident set size of this process (VmHWM), in bytes; 0 where /proc is absent.</summary>
    private static long PeakRss() => ProcStatus.Read("VmHWM:");
}

/// <summary>A headed TSV (no quoting, the shared data's format): Label plus Text or Sentence1, optionally
/// Sentence2.</summary>
internal sealed class Tsv
{
    private readonly List<ClassRow> _rows = [];
    public bool HasSentence2 { get; private set; }
    public int Count => _rows.Count;

    public static Tsv Read(string path)
    {
        var t = new Tsv();
        using var lines = File.ReadLines(path, Encoding.UTF8).GetEnumerator();
        if (!lines.MoveNext()) throw new InvalidDataException($"{path} is empty.");
        var header = lines.Current.Split('\t');
        int label = Array.IndexOf(header, "Label");
        int s1 = Array.IndexOf(header, "Text") is int ti and >= 0 ? ti : Array.IndexOf(header, "Sentence1");
        int s2 = Array.IndexOf(header, "Sentence2");
        if (label < 0 || s1 < 0) throw new InvalidDataException($"{path}: the header needs Label and Text or " +
            $"Sentence1 columns, got '{lines.Current}'.");
        t.HasSentence2 = s2 >= 0;
        int needed = Math.Max(label, Math.Max(s1, s2)) + 1;
        while (lines.MoveNext())
        {
            var line = lines.Current;
            if (line.Length == 0) continue;
            var f = line.Split('\t');
            if (f.Length < needed) throw new InvalidDataException($"{path}: expected at least {needed} fields, got " +
                $"'{line}'.");
            t._rows.Add(new ClassRow { Label = f[label], Sentence1 = f[s1], Sentence2 = s2 >= 0 ? f[s2] : "" });
        }
        return t;
    }

    /// <summary>The same seeded subsample in every child.</summary>
    public IEnumerable<ClassRow> Sample(int count, int seed)
    {
        var order = Enumerable.Range(0, _rows.Count).ToArray();
        new Random(seed).Shuffle(order);
        return order.Take(Math.Min(count, _rows.Count)).Select(i => _rows[i]);
    }
}

/// <summary>Launches one child per run, prints and writes the table, draws the chart.</summary>
internal static class Parent
{
    public static int Run(Options opt, string dataDir)
    {
        var runs = opt.Methods.SelectMany(m => opt.RatesFor(m).Select(lr => (Method: m, Lr: lr))).ToList();
        string task = opt.Regression ? "regression" : "classification";
        var header = new StringBuilder();
        header.AppendLine($"# MethodComparison: {task} on {Path.GetFileName(dataDir.TrimEnd('/'))} ({dataDir})");
        header.AppendLine();
        header.AppendLine($"{opt.TrainRows} training rows (seed {opt.Seed}) x {opt.EpochText}, "
            + $"{(opt.DevRows > 0 ? Options.Inv(opt.DevRows) : "all")} dev rows, "
            + $"max length {opt.MaxLength}, batch {(opt.BatchSize is { } b ? Options.Inv(b) : "default")}; " +
                $"{Environment.ProcessorCount} logical cores, libtorch threads "
            + $"{(opt.Threads > 0 ? Options.Inv(opt.Threads) : "default")}; {runs.Count} runs, each in its own " +
                $"process{(opt.Quick ? "; --quick smoke run: the metrics mean nothing" : "")}.");
        Console.Write(header);
        Console.WriteLine();

        var results = new List<RunResult>();
        var total = Stopwatch.StartNew();
        foreach (var (method, lr) in runs)
        {
            Console.Error.WriteLine($"--- {method}{(lr is { } r ? $" lr {Options.Inv(r)}" : "")} (elapsed " +
                $"{total.Elapsed:mm\\:ss})");
            var result = Launch(opt, dataDir, method, lr);
            Console.Error.WriteLine(result.Error is { } e
                ? $"    {method} failed: {e}. Continuing with the other runs."
                : $"    {result.Label}: dev {result.MetricName} {result.Metric:F4}, fit {result.FitSeconds:F0} s");
            results.Add(result);
        }
        string table = Table(results);
        string footer = $"Total wall time {total.Elapsed:hh\\:mm\\:ss}. Timings and tokens/s are noisy when the " +
            "cores are shared with other work.";
        Console.WriteLine(table);
        Console.WriteLine(footer);

        Directory.CreateDirectory(opt.OutDir);
        string stem =
            Path.Combine(opt.OutDir, $"{Path.GetFileName(dataDir.TrimEnd('/'))}{(opt.Quick ? "-quick" : "")}");
        File.WriteAllText(stem + ".md", header + "\n" + table + "\n" + footer + "\n");
        File.WriteAllText(stem + ".json",
            JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        try
        {
            Chart.Draw(results, stem + ".png", $"{Path.GetFileName(dataDir.TrimEnd('/'))}: {opt.TrainRows} rows x " +
                $"{opt.EpochText}{(opt.Quick ? " (quick smoke run)" : "")}");
            Console.WriteLine($"Wrote {stem}.md, {stem}.json and {stem}.png.");
        }
        catch (Exception ex)
        {
            Console.WriteLine($"Wrote {stem}.md and {stem}.json; the chart failed: {ex.Message}");
        }
        return results.All(r => r.Error is null) ? 0 : 1;
    }

    /// <summary>Redraws the table and chart of an earlier run from its .json (written next to it).</summary>
    public static int Replot(string json)
    {
        var results = JsonSerializer.Deserialize<List<RunResult>>(File.ReadAllText(json)) ?? [];
        string stem = Path.ChangeExtension(json, null);
        var first = results.FirstOrDefault(r => r.IsNeural && r.Error is null);
        Console.WriteLine(Table(results));
        Chart.Draw(results, stem + ".png", $"{Path.GetFileName(stem)}: {first?.TrainRows} rows");
        Console.WriteLine($"Wrote {stem}.png.");
        return 0;
    }

    private static RunResult Launch(Options opt, string dataDir, string method, double? lr)
    {
        var args = opt.SharedArgs(dataDir).Concat(["--method", method]);
        if (opt.MethodOptions.TryGetValue(method, out var options)) args =
            args.Concat(["--method-options", $"{method}={options}"]);
        if (lr is { } r) args = args.Concat(["--child-lr", r.ToString("R", CultureInfo.InvariantCulture)]);
        var (json, exitCode, tail) =
            ChildProcess.Run(args, opt.Threads, Child.ResultPrefix, line => Console.Error.WriteLine("  " + line));
        return json is not null ? JsonSerializer.Deserialize<RunResult>(json)!
            : new RunResult { Method = method, LearningRate = lr,
                Error = $"child exited with code {exitCode} and no result: {tail}" };
    }

    /// <summary>The reference for "vs full": full fine-tuning at its default rate, else the first full run.</summary>
    internal static RunResult? Reference(List<RunResult> results)
    {
        var full = results.Where(r => r.Method == Options.Full && r.Error is null).ToList();
        return full.FirstOrDefault(r => r.LearningRate == 3e-5) ?? full.FirstOrDefault();
    }

    private static string Table(List<RunResult> results)
    {
        var ok = results.FirstOrDefault(r => r.Error is null);
        string metric = ok?.MetricName ?? "metric";
        var reference = Reference(results);
        var sb = new StringBuilder();
        sb.AppendLine($"| method | trainable parameters | dev {metric} | vs full (points) | " +
            $"{ok?.SecondMetricName ?? "second metric"} | epochs run (kept) | peak RSS | training tokens/s | model " +
            "zip | training time |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            if (r.Error is { } e)
            {
                sb.AppendLine($"| {r.Label} | failed: {e.Replace("|", "\\|").Replace("\n", " ").Replace("\r", "")} | " +
                    $"| | | | {Mb(r.PeakRssBytes)} | | | |");
                continue;
            }
            string parameters = r.TrainablePercent is { } pct
                ? $"{r.TrainableParameters:N0} ({Percent(pct)})"
                : $"{r.TrainableParameters:N0} (linear weights)";
            string tokens = r.TokensPerSecond is { } t ? $"{t:N0}" : "-";
            string diff = reference is null ? "-" : r == reference ? "0 (reference)"
                : $"{100 * (r.Metric - reference.Metric):+0.0;-0.0;0.0}";
            string second = r.SecondMetric is { } s ? $"{s:F4}" : "-";
            string epochs = !r.IsNeural ? "-" : r.BestEpoch > 0 ? $"{r.Epochs} ({r.BestEpoch})" : $"{r.Epochs}";
            sb.AppendLine($"| {r.Label} | {parameters} | {r.Metric:F4} | {diff} | {second} | {epochs} | " +
                $"{Mb(r.PeakRssBytes)} | {tokens} | {Size(r.ZipBytes)} | {Seconds(r.TrainingSeconds)} |");
        }
        var first = results.FirstOrDefault(r => r.IsNeural && r.Error is null);
        if (first is not null)
            sb.AppendLine($"\nDev: {first.DevRows} rows. Training: {first.TrainRows} rows; " +
                $"{first.Plan ?? $"{first.Epochs} epoch(s)"}; "
                + "each neural run's epochs are in its row (early stopping may end it sooner); SDCA fits the same " +
                    "rows. Peak RSS is the child's VmHWM after scoring dev and saving the zip; "
                + "learning rates are each method's DefaultLearningRate unless --lr or --method-lr was given.");
        return sb.ToString();
    }

    private static string Seconds(double s) => s < 10 ? $"{s:F1} s" : $"{s:F0} s";
    internal static string Percent(double pct) => pct >= 1 ? $"{pct:F1}%" : pct >= 0.01 ? $"{pct:F2}%" : $"{pct:F4}%";
    private static string Mb(long bytes) => bytes > 0 ? $"{bytes / (1024.0 * 1024):N0} MiB" : "-";
    private static string Size(long bytes) => bytes >= 1024 * 1024 ? $"{bytes / (1024.0 * 1024):N1} MiB"
        : $"{bytes / 1024.0:N0} KiB";
}

/// <summary>Dev metric vs trainable parameters (log scale), as in the review's figures.</summary>
internal static class Chart
{
    public static void Draw(List<RunResult> results, string path, string title)
    {
        var ok = results.Where(r => r.Error is null).ToList();
        var plt = new ScottPlot.Plot();
        var points = ok.Where(r => r.IsNeural && r.TrainablePercent is > 0).ToList();
        var palette = new ScottPlot.Palettes.Category20();
        var finite = ok.Select(r => r.Metric).Where(double.IsFinite).ToList();
        double ySpan = finite.Count > 0 ? Math.Max(0.02, finite.Max() - finite.Min()) : 1;
        var placed = new List<(double X, double Y, float OffsetY)>();
        for (int i = 0; i < points.Count; i++)
        {
            var r = points[i];
            double x = Math.Log10(r.TrainablePercent!.Value);
            // Labels of points that nearly coincide (e.g. lora and dora) go one line lower each instead of overlapping.
            float offsetY = -6;
            while (placed.Any(p => Math.Abs(p.X - x) < 0.4 && Math.Abs(p.Y - r.Metric) < 0.03 * ySpan
                && p.OffsetY == offsetY)) offsetY += 14;
            placed.Add((x, r.Metric, offsetY));
            var marker = plt.Add.Marker(x, r.Metric);
            marker.MarkerSize = 10;
            marker.Color = palette.GetColor(i);
            var label = plt.Add.Text(r.Method, x, r.Metric);
            label.LabelFontSize = 12;
            label.LabelFontColor = palette.GetColor(i);
            label.OffsetX = 6;
            label.OffsetY = offsetY;
        }
        var reference = Parent.Reference(ok);
        if (reference is not null)
        {
            var line = plt.Add.HorizontalLine(reference.Metric);
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.Color = ScottPlot.Colors.Black;
            LineLabel(plt, "full fine-tuning", reference.Metric, ScottPlot.Colors.Black);
        }
        if (ok.FirstOrDefault(r => r.Method == Options.Sdca) is { } sdca)
        {
            var line = plt.Add.HorizontalLine(sdca.Metric);
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.Color = ScottPlot.Colors.Gray;
            LineLabel(plt, "FeaturizeText + SDCA", sdca.Metric, ScottPlot.Colors.Gray);
        }
        // ScottPlot 5 has no log axis: x is log10(trainable %) with tick labels at the decades.
        double lo = points.Count > 0 ? Math.Floor(points.Min(r => Math.Log10(r.TrainablePercent!.Value))) : -3;
        foreach (var t in plt.GetPlottables<ScottPlot.Plottables.Text>()
            .Where(t => t.LabelText is "full fine-tuning" or "FeaturizeText + SDCA"))
            t.Location = new ScottPlot.Coordinates(lo - 0.15, t.Location.Y);
        double[] ticks = Enumerable.Range((int)lo, 2 - (int)lo + 1).Select(d => (double)d).ToArray();
        plt.Axes.Bottom.SetTicks(ticks,
            ticks.Select(d => d >= 0 ? $"{Math.Pow(10, d):0}%" : $"{Math.Pow(10, d):0.####}%").ToArray());
        plt.Axes.SetLimitsX(lo - 0.2, 2.6);
        var ys = ok.Select(r => r.Metric).Where(double.IsFinite).ToList();
        if (ys.Count > 0)
        {
            double span = Math.Max(0.02, ys.Max() - ys.Min());
            plt.Axes.SetLimitsY(ys.Min() - 0.1 * span, ys.Max() + 0.1 * span);
        }
        string metric = ok.FirstOrDefault()?.MetricName ?? "metric";
        plt.XLabel("trainable parameters (% of the model, log scale)");
        plt.YLabel($"dev {metric}");
        plt.Title(title);
        plt.SavePng(path, 1000, 650);
    }

    /// <summary>A caption just above a horizontal reference line, at its right end (moved there once the x range is
    /// known).</summary>
    private static void LineLabel(ScottPlot.Plot plt, string text, double y, ScottPlot.Color color)
    {
        var label = plt.Add.Text(text, 0, y);
        label.LabelFontSize = 12;
        label.LabelFontColor = color;
        label.LabelAlignment = ScottPlot.Alignment.LowerLeft;
        label.OffsetY = -2;
    }
}
