// LoraVsFull: LoRA vs full fine-tuning of the embedded all-MiniLM-L6-v2 vs ML.NET's FeaturizeText + SdcaMaximumEntropy,
// on the same SST-2 training subsample and the same token budget (rows x epochs), scored on all 872 dev rows.
//
//   dotnet run -c Release --project benchmarks/LoraVsFull [-- options]
//
// Options:
//   --data <folder>       folder holding train.tsv and dev.tsv (default: shared/data/sst2 found by walking up from here)
//   --train-rows <n>      training rows drawn (seeded shuffle) from SST-2 train (default 16000)
//   --epochs <n>          passes over them (default 2); rows x epochs is the token budget every neural run gets
//   --max-length <n>      longest input in tokens (default 64: SST-2 dev sentences reach ~60 word pieces)
//   --batch-size <n>      rows per batch (default 32)
//   --lora-lr <a,b,...>   LoRA learning rates, one run each (default 5e-4,2e-3: the library default, and the rate that
//                         matched full fine-tuning at this budget; 1e-3 fell in between)
//   --full-lr <a,b,...>   full fine-tuning learning rates, one run each (default 3e-5,5e-5)
//   --methods <list>      any of lora,full,sdca (default all three)
//   --threads <n>         libtorch threads in each child (OMP_NUM_THREADS; default 1; 0 keeps libtorch's default).
//                         On cores shared with other work, libtorch's default (one OpenMP thread per core) ran 5x
//                         slower than one thread here: OpenMP threads spin waiting for each other.
//   --seed <n>            MLContext seed and subsample seed (default 1)
//   --quick               smoke run: 400 rows, 1 epoch, one learning rate each
//
// Each run happens in a child process (this program re-launched with --method lora|full|sdca) because peak RSS
// (VmHWM in /proc/self/status) is process-wide and never goes down; each child prints one JSON line on stdout.
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Full;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Trainers;

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

string? dataDir = opt.DataDir ?? DataLocator.Find();
if (dataDir is null || !File.Exists(Path.Combine(dataDir, "train.tsv")) || !File.Exists(Path.Combine(dataDir, "dev.tsv")))
{
    Console.WriteLine(dataDir is null
        ? "SST-2 data not found: no shared/data/sst2 folder above the current directory or the program's folder. Pass --data <folder with train.tsv and dev.tsv>. Nothing to benchmark."
        : $"SST-2 data not found: '{dataDir}' has no train.tsv and dev.tsv. Nothing to benchmark.");
    return 0;
}

if (opt.ChildMethod is { } method)
    return Child.Run(opt, method, dataDir);
return Parent.Run(opt, dataDir);

/// <summary>Command-line options; the same parser serves the parent and its children.</summary>
internal sealed record Options
{
    public string? DataDir { get; init; }
    public int TrainRows { get; init; } = 16000;
    public int Epochs { get; init; } = 2;
    public int MaxLength { get; init; } = 64;
    public int BatchSize { get; init; } = 32;
    public double[] LoraLearningRates { get; init; } = [5e-4, 2e-3];
    public double[] FullLearningRates { get; init; } = [3e-5, 5e-5];
    public int Threads { get; init; } = 1;
    public string[] Methods { get; init; } = ["lora", "full", "sdca"];
    public int Seed { get; init; } = 1;
    public bool Quick { get; init; }
    public string? ChildMethod { get; init; }
    public double? ChildLearningRate { get; init; }

    public static Options Parse(string[] args)
    {
        var o = new Options();
        bool rowsSet = false, epochsSet = false, loraSet = false, fullSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option '{args[i]}' needs a value.");
            int NextInt(int min)
            {
                string name = args[i], s = Next();
                return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
                    ? v : throw new ArgumentException($"Option '{name}' needs an integer >= {min}, got '{s}'.");
            }
            double[] NextRates()
            {
                string name = args[i];
                return Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s =>
                    double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0
                        ? v : throw new ArgumentException($"Option '{name}' needs positive numbers, got '{s}'.")).ToArray();
            }
            switch (args[i])
            {
                case "--data": o = o with { DataDir = Path.GetFullPath(Next()) }; break;
                case "--train-rows": o = o with { TrainRows = NextInt(10) }; rowsSet = true; break;
                case "--epochs": o = o with { Epochs = NextInt(1) }; epochsSet = true; break;
                case "--max-length": o = o with { MaxLength = NextInt(8) }; break;
                case "--batch-size": o = o with { BatchSize = NextInt(1) }; break;
                case "--lora-lr": o = o with { LoraLearningRates = NextRates() }; loraSet = true; break;
                case "--full-lr": o = o with { FullLearningRates = NextRates() }; fullSet = true; break;
                case "--methods":
                    o = o with { Methods = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) };
                    if (o.Methods.Length == 0 || o.Methods.Any(m => m is not ("lora" or "full" or "sdca")))
                        throw new ArgumentException("Option '--methods' takes a comma-separated subset of lora,full,sdca.");
                    break;
                case "--threads": o = o with { Threads = NextInt(0) }; break;
                case "--seed": o = o with { Seed = NextInt(0) }; break;
                case "--quick": o = o with { Quick = true }; break;
                case "--method":
                    o = o with { ChildMethod = Next() };
                    if (o.ChildMethod is not ("lora" or "full" or "sdca")) throw new ArgumentException("Option '--method' takes lora, full or sdca.");
                    break;
                case "--lr": o = o with { ChildLearningRate = NextRates()[0] }; break;
                case "-h" or "--help":
                    throw new ArgumentException("Usage: LoraVsFull [--data <folder>] [--train-rows n] [--epochs n] [--max-length n] [--batch-size n] "
                        + "[--lora-lr a,b] [--full-lr a,b] [--methods lora,full,sdca] [--threads n] [--seed n] [--quick]");
                default: throw new ArgumentException($"Unknown option '{args[i]}'. Use --help.");
            }
        }
        if (o.Quick)
        {
            o = o with
            {
                TrainRows = rowsSet ? o.TrainRows : 400, Epochs = epochsSet ? o.Epochs : 1,
                LoraLearningRates = loraSet ? o.LoraLearningRates : [o.LoraLearningRates[0]],
                FullLearningRates = fullSet ? o.FullLearningRates : [o.FullLearningRates[0]],
            };
        }
        return o;
    }

    /// <summary>The options a child needs to rebuild the same subsample and budget.</summary>
    public IEnumerable<string> SharedArgs(string dataDir) =>
    [
        "--data", dataDir, "--train-rows", Inv(TrainRows), "--epochs", Inv(Epochs), "--max-length", Inv(MaxLength),
        "--batch-size", Inv(BatchSize), "--seed", Inv(Seed),
    ];

    internal static string Inv(IFormattable v) => v.ToString(null, CultureInfo.InvariantCulture);
}

/// <summary>Finds shared/data/sst2 next to (above) the repository.</summary>
internal static class DataLocator
{
    public static string? Find()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "shared", "data", "sst2");
                if (File.Exists(Path.Combine(candidate, "train.tsv"))) return candidate;
            }
        }
        return null;
    }
}

/// <summary>One row of the SST-2 TSV files.</summary>
internal sealed class Review
{
    public string Label { get; set; } = "";
    public string Text { get; set; } = "";
}

/// <summary>What one child measured; one JSON line on its stdout.</summary>
internal sealed record RunResult
{
    public string Method { get; init; } = "";
    public string Name { get; init; } = "";
    public double? LearningRate { get; init; }
    public int TrainRows { get; init; }
    public int Epochs { get; init; }
    public double DevAccuracy { get; init; }
    public double DevMacroAccuracy { get; init; }
    public int DevRows { get; init; }
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
}

/// <summary>One benchmark run in its own process.</summary>
internal static class Child
{
    public const string ResultPrefix = "LORAVSFULL-RESULT ";

    public static int Run(Options opt, string method, string dataDir)
    {
        var ml = new MLContext(seed: opt.Seed);
        var trainRows = Sample(ReadTsv(Path.Combine(dataDir, "train.tsv")), opt.TrainRows, opt.Seed);
        var devRows = ReadTsv(Path.Combine(dataDir, "dev.tsv"));
        var train = ml.Data.LoadFromEnumerable(trainRows);
        var dev = ml.Data.LoadFromEnumerable(devRows);
        double? lr = method == "sdca" ? null : opt.ChildLearningRate;
        string name = method switch
        {
            "lora" => $"LoRA r=8 a=16 q,v lr {lr?.ToString("0.#e0", CultureInfo.InvariantCulture) ?? "default"}",
            "full" => $"Full fine-tuning lr {lr?.ToString("0.#e0", CultureInfo.InvariantCulture) ?? "default"}",
            _ => "FeaturizeText + SdcaMaximumEntropy",
        };

        var clock = Stopwatch.StartNew();
        ITransformer model;
        RunResult result;
        if (method == "sdca")
        {
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.Transforms.Text.FeaturizeText("Features", "Text"))
                .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy())
                .Fit(train);
            double fitSeconds = clock.Elapsed.TotalSeconds;
            model = fitted;
            VBuffer<float>[] weights = [];
            fitted.LastTransformer.Model.GetWeights(ref weights, out int classes);
            long parameters = weights.Sum(w => (long)w.Length) + classes;
            result = new RunResult
            {
                TrainableParameters = parameters, TotalParameters = parameters, TrainingSeconds = fitSeconds, FitSeconds = fitSeconds,
            };
        }
        else
        {
            PeftMethodConfig config = method == "lora"
                ? new LoraConfig { Rank = 8, Alpha = 16, TargetModules = ["query", "value"] }
                : new FullFineTuningConfig();
            var options = new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Method = config,
                Epochs = opt.Epochs, BatchSize = opt.BatchSize, LearningRate = lr, MaxSequenceLength = opt.MaxLength,
                LogEverySteps = 25,
                Progress = p => Console.Error.WriteLine($"  [{name}] {p} RSS {ProcStatus("VmRSS:") / (1024 * 1024)} MiB"),
            };
            // Workaround: Fit draws the LoRA A matrices and the classifier head from libtorch's global generator before
            // the trainer seeds it from the MLContext, so without this two runs with the same seed differ.
            TorchSharp.torch.manual_seed(opt.Seed);
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.Peft().TextClassification(options))
                .Fit(train);
            double fitSeconds = clock.Elapsed.TotalSeconds;
            model = fitted;
            var stage = fitted.LastTransformer;
            var report = stage.TrainingReport ?? throw new InvalidOperationException("The fitted stage has no TrainingReport.");
            result = new RunResult
            {
                LearningRate = lr ?? config.DefaultLearningRate,
                TrainableParameters = stage.TrainableParameterCount, TotalParameters = stage.TotalParameterCount,
                TrainablePercent = stage.TrainablePercent, TokensPerSecond = report.TokensPerSecond,
                TrainingTokens = (long)Math.Round(report.TokensPerSecond * report.Duration.TotalSeconds),
                FinalTrainLoss = report.FinalTrainLoss, TrainingSeconds = report.Duration.TotalSeconds, FitSeconds = fitSeconds,
            };
        }
        long hwmAfterFit = PeakRss();

        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(dev), "Label");
        string folder = Path.Combine(Path.GetTempPath(), $"loravsfull-{Environment.ProcessId}-{Guid.NewGuid():N}");
        long zipBytes;
        try
        {
            string zip = Path.Combine(folder, $"{method}.zip");
            PeftModelIO.SaveAtomic(ml, model, train.Schema, zip);
            zipBytes = new FileInfo(zip).Length;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        result = result with
        {
            Method = method, Name = name, TrainRows = trainRows.Count, Epochs = method == "sdca" ? 0 : opt.Epochs,
            DevAccuracy = metrics.MicroAccuracy, DevMacroAccuracy = metrics.MacroAccuracy, DevRows = devRows.Count,
            PeakRssAfterFitBytes = hwmAfterFit, PeakRssBytes = PeakRss(), ZipBytes = zipBytes,
        };
        Console.Out.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        Console.Out.Flush();
        return 0;
    }

    /// <summary>Label&lt;TAB&gt;Text with a header row, no quoting (the shared data's format).</summary>
    private static List<Review> ReadTsv(string path)
    {
        var rows = new List<Review>();
        foreach (var line in File.ReadLines(path, Encoding.UTF8).Skip(1))
        {
            if (line.Length == 0) continue;
            var fields = line.Split('\t');
            if (fields.Length < 2) throw new InvalidDataException($"{path}: expected Label<TAB>Text, got '{line}'.");
            rows.Add(new Review { Label = fields[0], Text = fields[1] });
        }
        return rows;
    }

    /// <summary>The same seeded subsample in every child.</summary>
    private static List<Review> Sample(List<Review> rows, int count, int seed)
    {
        var order = Enumerable.Range(0, rows.Count).ToArray();
        new Random(seed).Shuffle(order);
        return order.Take(Math.Min(count, rows.Count)).Select(i => rows[i]).ToList();
    }

    /// <summary>Peak resident set size of this process (VmHWM), in bytes; 0 where /proc is absent.</summary>
    private static long PeakRss() => ProcStatus("VmHWM:");

    /// <summary>A size field of /proc/self/status (e.g. <c>VmRSS:</c>), in bytes; 0 where /proc is absent.</summary>
    private static long ProcStatus(string field)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (var line in File.ReadLines(status))
        {
            if (!line.StartsWith(field, StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }
}

/// <summary>Launches one child per run and prints the table.</summary>
internal static class Parent
{
    public static int Run(Options opt, string dataDir)
    {
        var runs = new List<(string Method, double? Lr)>();
        if (opt.Methods.Contains("lora")) runs.AddRange(opt.LoraLearningRates.Select(lr => ("lora", (double?)lr)));
        if (opt.Methods.Contains("full")) runs.AddRange(opt.FullLearningRates.Select(lr => ("full", (double?)lr)));
        if (opt.Methods.Contains("sdca")) runs.Add(("sdca", null));

        Console.WriteLine($"# LoraVsFull: SST-2 from {dataDir}");
        Console.WriteLine($"{opt.TrainRows} training rows (seed {opt.Seed}) x {opt.Epochs} epoch(s), max length {opt.MaxLength}, batch {opt.BatchSize}; "
            + $"{Environment.ProcessorCount} logical cores, libtorch threads {(opt.Threads > 0 ? Options.Inv(opt.Threads) : "default")}; {runs.Count} runs, each in its own process.");
        Console.WriteLine();

        var results = new List<RunResult>();
        var total = Stopwatch.StartNew();
        foreach (var (method, lr) in runs)
        {
            Console.Error.WriteLine($"--- {method}{(lr is { } r ? $" lr {Options.Inv(r)}" : "")} (elapsed {total.Elapsed:mm\\:ss})");
            var result = Launch(opt, dataDir, method, lr);
            if (result is null)
            {
                Console.Error.WriteLine($"    {method} failed; see its output above. Continuing with the other runs.");
                continue;
            }
            Console.Error.WriteLine($"    {result.Name}: dev accuracy {result.DevAccuracy:F4}, fit {result.FitSeconds:F0} s");
            results.Add(result);
        }
        Console.WriteLine(Table(results));
        Console.WriteLine(Ratios(results));
        Console.WriteLine($"Total wall time {total.Elapsed:hh\\:mm\\:ss}. Timings and tokens/s are noisy when the cores are shared with other work.");
        return results.Count == runs.Count ? 0 : 1;
    }

    private static RunResult? Launch(Options opt, string dataDir, string method, double? lr)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = false, UseShellExecute = false };
        if (opt.Threads > 0)
        {
            // libtorch reads these when it loads, before any code of ours could call torch.set_num_threads.
            psi.Environment["OMP_NUM_THREADS"] = Options.Inv(opt.Threads);
            psi.Environment["MKL_NUM_THREADS"] = Options.Inv(opt.Threads);
        }
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this program's executable.");
        psi.FileName = self;
        // Under 'dotnet LoraVsFull.dll' the process is the dotnet host: hand it the assembly again.
        if (Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in opt.SharedArgs(dataDir)) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--method");
        psi.ArgumentList.Add(method);
        if (lr is { } r)
        {
            psi.ArgumentList.Add("--lr");
            psi.ArgumentList.Add(r.ToString("R", CultureInfo.InvariantCulture));
        }
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"Cannot start '{self}'.");
        RunResult? result = null;
        string? line;
        while ((line = child.StandardOutput.ReadLine()) is not null)
        {
            if (line.StartsWith(Child.ResultPrefix, StringComparison.Ordinal))
                result = JsonSerializer.Deserialize<RunResult>(line[Child.ResultPrefix.Length..]);
            else
                Console.Error.WriteLine("  " + line);
        }
        child.WaitForExit();
        return child.ExitCode == 0 ? result : null;
    }

    private static string Table(List<RunResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| method | dev accuracy | trainable parameters | training tokens/s | peak RSS (fit) | peak RSS (run) | model zip | training time | Fit wall time |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            string parameters = r.TrainablePercent is { } pct
                ? $"{r.TrainableParameters:N0} of {r.TotalParameters:N0} ({pct:F2}%)"
                : $"{r.TrainableParameters:N0} (linear weights)";
            string tokens = r.TokensPerSecond is { } t ? $"{t:N0}" : "-";
            sb.AppendLine($"| {r.Name} | {r.DevAccuracy:F4} | {parameters} | {tokens} | {Mb(r.PeakRssAfterFitBytes)} | {Mb(r.PeakRssBytes)} | {Size(r.ZipBytes)} | {r.TrainingSeconds:F0} s | {r.FitSeconds:F0} s |");
        }
        var first = results.FirstOrDefault(r => r.Method != "sdca");
        if (first is not null)
            sb.AppendLine($"\nDev: {first.DevRows} rows. Training: {first.TrainRows} rows x {first.Epochs} epoch(s) = {first.TrainingTokens:N0} real (non-padding) tokens for each neural run; SDCA fits the same rows.");
        return sb.ToString();
    }

    private static string Ratios(List<RunResult> results)
    {
        var sb = new StringBuilder();
        foreach (var lora in results.Where(r => r.Method == "lora"))
        {
            foreach (var full in results.Where(r => r.Method == "full"))
            {
                sb.AppendLine($"- {lora.Name} / {full.Name}: peak RSS (fit) {Ratio(lora.PeakRssAfterFitBytes, full.PeakRssAfterFitBytes)}, "
                    + $"peak RSS (run) {Ratio(lora.PeakRssBytes, full.PeakRssBytes)}, model zip {Ratio(lora.ZipBytes, full.ZipBytes)} "
                    + $"({100.0 * lora.ZipBytes / Math.Max(1, full.ZipBytes):F2}%), accuracy {100 * (lora.DevAccuracy - full.DevAccuracy):+0.0;-0.0} points");
            }
        }
        return sb.Length == 0 ? "" : "LoRA / full:\n" + sb.ToString();
    }

    private static string Ratio(long a, long b) => b > 0 ? $"{(double)a / b:F3}" : "-";
    private static string Mb(long bytes) => bytes > 0 ? $"{bytes / (1024.0 * 1024):N0} MiB" : "-";
    private static string Size(long bytes) => bytes >= 1024 * 1024 ? $"{bytes / (1024.0 * 1024):N1} MiB" : $"{bytes / 1024.0:N0} KiB";
}
