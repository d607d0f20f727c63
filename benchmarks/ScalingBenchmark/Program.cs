// ScalingBenchmark: how LoRA training's speed and peak memory scale
//   (1) with the sequence length (64 -> 128 -> 256 -> 512 tokens, the same rows and steps at each length), with and
//       without PeftTextOptions.GradientCheckpointing, and
//   (2) with the size of the training set (1k -> 4k -> 16k -> 64k rows of SST-2, 1 epoch, max length 64).
//
//   dotnet run -c Release --project benchmarks/ScalingBenchmark [-- options]
//
// Options:
//   --part <p>            length, rows or all (default all)
//   --precision <p>       auto (default: bf16 where the CPU has it), fp32 or bf16
//   --threads <n>         libtorch threads in each child (OMP_NUM_THREADS/MKL_NUM_THREADS; default 1; 0 keeps
// libtorch's default)
//   --lengths <a,b,...>   part 1: sequence lengths (default 64,128,256,512)
//   --length-rows <n>     part 1: generated rows of exactly that many tokens at each length (default 256)
//   --length-batch <n>    part 1: rows per batch (default 16: 16 optimizer steps at 256 rows)
//   --sizes <a,b,...>     part 2: training rows drawn from SST-2 (seeded shuffle, nested prefixes; default
// 1000,4000,16000,64000)
//   --rows-batch <n>      part 2: rows per batch (default 32, the library's default)
//   --max-length <n>      part 2: MaxSequenceLength (default 64)
//   --data <folder>       part 2: folder holding train.tsv (default: shared/data/sst2 found by walking up from here)
//   --seed <n>            MLContext, libtorch and shuffle seed (default 1)
//   --budgets <a,b,...>   part 1: memory budgets, one point each: default (MaxTrainingMemory unset, the default),
//                         off (0) or MiB (default: default)
//   --checkpointing <c>   part 1: GradientCheckpointing off, on or both (default both)
//   --attention-dropout <p> PeftTextOptions.AttentionDropout for every point (default: the base model's own, 0.1); 0
// lets                         libtorch use its fused attention kernel in training
//   --out <folder>        where the table (.md), the results (.json) and the charts (.png) go (default
// artifacts/scaling)
//   --quick               smoke run: lengths 64,128 with 32 rows, sizes 250,1000 (under a minute; the figures mean
// little)
//
// Each point runs in a child process (this program re-launched with --child KIND:VALUE[:ckpt]) because peak RSS (VmHWM
// in /proc/self/status) is process-wide and never goes down; each child prints one JSON line on stdout, also when it
// fails.
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Runtime;
using Microsoft.ML.Peft.Training;

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
if (opt.Help)
{
    Console.WriteLine(Options.Usage);
    return 0;
}
if (opt.Child is { } point)
    return Child.Run(opt, point);
return Parent.Run(opt);

/// <summary>One measurement: a sequence length (with or without checkpointing) or a training-set size.</summary>
internal sealed record Point(string Kind, int Value, bool Checkpointing, string Budget = Point.DefaultBudget)
{
    public const string Length = "length";
    public const string Rows = "rows";
    /// <summary>The library's own memory budget (MaxTrainingMemory unset), what a user gets.</summary>
    public const string DefaultBudget = "default";

    public override string ToString() =>
        $"{Kind}:{Value}{(Checkpointing ? ":ckpt" : "")}{(Budget != DefaultBudget ? ":budget-" + Budget : "")}";

    public static Point Parse(string s)
    {
        var p = s.Split(':').ToList();
        string budget = DefaultBudget;
        if (p.Count > 2 && p[^1].StartsWith("budget-", StringComparison.Ordinal))
        {
            budget = Options.CheckBudget(p[^1]["budget-".Length..]);
            p.RemoveAt(p.Count - 1);
        }
        if (p.Count is < 2 or > 3 || p[0] is not (Length or Rows)
            || !int.TryParse(p[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
            || (p.Count == 3 && p[2] != "ckpt"))
            throw new ArgumentException(
                $"Option '--child' takes length:N[:ckpt][:budget-B] or rows:N[:budget-B], got '{s}'.");
        return new Point(p[0], v, p.Count == 3, budget);
    }

    /// <summary>PeftTextOptions.MaxTrainingMemory for this point: null (the default), 0 (off) or MiB.</summary>
    public long? MaxTrainingMemory => Budget switch
    {
        DefaultBudget => null,
        "off" => 0,
        var mib => long.Parse(mib, CultureInfo.InvariantCulture) << 20,
    };
}

/// <summary>Command-line options; the same parser serves the parent and its children.</summary>
internal sealed record Options
{
    public const string Usage =
        "Usage: ScalingBenchmark [--part length|rows|all] [--precision auto|fp32|bf16] [--threads n] [--lengths " +
            "64,128,256,512]\n" +
        "    [--length-rows 256] [--length-batch 16] [--sizes 1000,4000,16000,64000] [--rows-batch 32] [--max-length " +
            "64]\n" +
        "    [--data <folder>] [--seed 1] [--budgets default,off,MiB] [--checkpointing off|on|both]\n" +
        "    [--attention-dropout p] [--out artifacts/scaling] [--quick]\n" +
        "  Part 1 (length): LoRA training tokens/s and peak RSS at each sequence length, with and without gradient " +
            "checkpointing.\n" +
        "  Part 2 (rows): the same as the SST-2 training set grows (1 epoch, max length 64). See benchmarks/README.md.";

    public bool Help { get; init; }
    public bool RunLengths { get; init; } = true;
    public bool RunRows { get; init; } = true;
    public string Precision { get; init; } = "auto";
    public int Threads { get; init; } = 1;
    public int[] Lengths { get; init; } = [64, 128, 256, 512];
    public int LengthRows { get; init; } = 256;
    public int LengthBatch { get; init; } = 16;
    /// <summary>Part 1's memory budgets: "default", "off" or a size in MiB, one point each.</summary>
    public string[] Budgets { get; init; } = [Point.DefaultBudget];
    /// <summary>Part 1's gradient checkpointing settings: off, on, or both (one point each).</summary>
    public bool[] CheckpointingSettings { get; init; } = [false, true];
    public int[] Sizes { get; init; } = [1000, 4000, 16000, 64000];
    public int RowsBatch { get; init; } = 32;
    public int MaxLength { get; init; } = 64;
    public string? DataDir { get; init; }
    public int Seed { get; init; } = 1;
    public string OutDir { get; init; } = Path.Combine("artifacts", "scaling");
    public bool Quick { get; init; }
    public Point? Child { get; init; }
    /// <summary>PeftTextOptions.AttentionDropout; null keeps the base model's own value.</summary>
    public double? AttentionDropout { get; init; }

    public PeftPrecision PeftPrecision => Precision switch
    {
        "fp32" => Microsoft.ML.Peft.Training.PeftPrecision.Float32,
        "bf16" => Microsoft.ML.Peft.Training.PeftPrecision.BFloat16,
        _ => Microsoft.ML.Peft.Training.PeftPrecision.Auto,
    };

    public static Options Parse(string[] args)
    {
        var o = new Options();
        bool lengthsSet = false, lengthRowsSet = false, sizesSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i]
                : throw new ArgumentException($"Option '{args[i]}' needs a value.");
            int NextInt(int min, int max = int.MaxValue)
            {
                string name = args[i], s = Next();
                return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
                    && v >= min && v <= max
                    ? v
                    : throw new ArgumentException($"Option '{name}' needs an integer in [{min}, {max}], got '{s}'.");
            }
            int[] NextInts(int min, int max)
            {
                string name = args[i];
                var values = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(x =>
                    int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
                        && v <= max
                        ? v : throw new ArgumentException($"Option '{name}' needs integers in [{min}, {max}], got " +
                            $"'{x}'.")).Distinct().ToArray();
                return values.Length > 0 ? values
                    : throw new ArgumentException($"Option '{name}' needs at least one value.");
            }
            switch (args[i])
            {
                case "--part":
                    o = Next() switch
                    {
                        "length" => o with { RunLengths = true, RunRows = false },
                        "rows" => o with { RunLengths = false, RunRows = true },
                        "all" => o with { RunLengths = true, RunRows = true },
                        var p => throw new ArgumentException($"Option '--part' takes length, rows or all, got '{p}'."),
                    };
                    break;
                case "--precision":
                    o = o with { Precision = Next() switch
                    {
                        "auto" => "auto", "fp32" => "fp32", "bf16" => "bf16",
                        var p => throw new ArgumentException("Option '--precision' takes auto, fp32 or bf16, got " +
                            $"'{p}'."),
                    } };
                    break;
                case "--threads": o = o with { Threads = NextInt(0) }; break;
                case "--lengths": o = o with { Lengths = NextInts(8, 512) }; lengthsSet = true; break;
                case "--length-rows": o = o with { LengthRows = NextInt(2) }; lengthRowsSet = true; break;
                case "--length-batch": o = o with { LengthBatch = NextInt(1) }; break;
                case "--sizes": o = o with { Sizes = NextInts(10, int.MaxValue) }; sizesSet = true; break;
                case "--rows-batch": o = o with { RowsBatch = NextInt(1) }; break;
                case "--max-length": o = o with { MaxLength = NextInt(8, 512) }; break;
                case "--data": o = o with { DataDir = Path.GetFullPath(Next()) }; break;
                case "--seed": o = o with { Seed = NextInt(0) }; break;
                case "--attention-dropout":
                {
                    string v = Next();
                    o = o with { AttentionDropout =
                        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
                        && d is >= 0 and < 1
                        ? d : throw new ArgumentException("Option '--attention-dropout' needs a number in [0, 1), " +
                            $"got '{v}'.") };
                    break;
                }
                case "--budgets":
                    o = o with { Budgets = Next().Split(',', StringSplitOptions.RemoveEmptyEntries
                        | StringSplitOptions.TrimEntries).Select(CheckBudget).ToArray() };
                    break;
                case "--checkpointing":
                    o = o with { CheckpointingSettings = Next() switch
                    {
                        "off" => [false], "on" => [true], "both" => [false, true],
                        var c => throw new ArgumentException($"Option '--checkpointing' takes off, on or both, got " +
                            $"'{c}'."),
                    } };
                    break;
                case "--out": o = o with { OutDir = Next() }; break;
                case "--quick": o = o with { Quick = true }; break;
                case "--child": o = o with { Child = Point.Parse(Next()) }; break;
                case "-h" or "--help": o = o with { Help = true }; break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.\n{Usage}");
            }
        }
        if (o.Quick)
        {
            o = o with
            {
                Lengths = lengthsSet ? o.Lengths : [64, 128],
                LengthRows = lengthRowsSet ? o.LengthRows : 32,
                Sizes = sizesSet ? o.Sizes : [250, 1000],
            };
        }
        return o;
    }

    /// <summary>The options a child needs to rebuild the same data and settings.</summary>
    public IEnumerable<string> ChildArgs(string? dataDir)
    {
        IEnumerable<string> args =
        [
            "--precision", Precision, "--length-rows", Inv(LengthRows), "--length-batch", Inv(LengthBatch),
            "--rows-batch", Inv(RowsBatch), "--max-length", Inv(MaxLength), "--seed", Inv(Seed),
        ];
        if (AttentionDropout is { } a) args = args.Concat(["--attention-dropout", Inv(a)]);
        return dataDir is null ? args : args.Concat(["--data", dataDir]);
    }

    internal static string Inv(IFormattable v) => v.ToString(null, CultureInfo.InvariantCulture);

    /// <summary>A memory budget as the options take it: default, off, or a whole number of MiB (at least 64).</summary>
    internal static string CheckBudget(string b) =>
        b is Point.DefaultBudget or "off"
        || (int.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out int mib) && mib >= 64)
            ? b : throw new ArgumentException($"A memory budget is default, off or MiB (at least 64), got '{b}'.");
}

/// <summary>What one child measured; one JSON line on its stdout.</summary>
internal sealed record PointResult
{
    public string Kind { get; init; } = "";
    public int Value { get; init; }
    public bool Checkpointing { get; init; }
    public string? Error { get; init; }
    public int Rows { get; init; }
    public int BatchSize { get; init; }
    public int MaxSequenceLength { get; init; }
    public int Steps { get; init; }
    public string Precision { get; init; } = "";
    public long TrainingTokens { get; init; }
    public double TokensPerSecond { get; init; }
    public double TrainingSeconds { get; init; }
    public double FitSeconds { get; init; }
    public double FinalTrainLoss { get; init; }
    public long RssBeforeFitBytes { get; init; }
    public long PeakRssBytes { get; init; }
    public string Budget { get; init; } = Point.DefaultBudget;
    public long BudgetBytes { get; init; }
    public int RowsPerPass { get; init; }
    public int AccumulationSteps { get; init; } = 1;
    /// <summary>Gradient checkpointing as training ran it (the budget may have turned it on).</summary>
    public bool BudgetCheckpointing { get; init; }
    /// <summary>True when the budget turned attention dropout off for the fused attention kernel.</summary>
    public bool FusedAttention { get; init; }
}

/// <summary>A training row: a text and a string label (made a key by MapValueToKey).</summary>
internal sealed class TrainRow
{
    public string Sentence1 { get; set; } = "";
    public string Label { get; set; } = "";
}

/// <summary>One point in its own process.</summary>
internal static class Child
{
    public const string ResultPrefix = "SCALING-RESULT ";

    public static int Run(Options opt, Point point)
    {
        PointResult result;
        int code = 0;
        try
        {
            result = Measure(opt, point);
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine(ex);
            var inner = ex;
            while (inner.InnerException is not null && inner is TargetInvocationException or AggregateException)
                inner = inner.InnerException;
            result = new PointResult
            {
                Kind = point.Kind, Value = point.Value, Checkpointing = point.Checkpointing,
                Error = $"{inner.GetType().Name}: {inner.Message}", PeakRssBytes = ProcStatus.Read("VmHWM:"),
            };
            code = 1;
        }
        Console.Out.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        Console.Out.Flush();
        return code;
    }

    private static PointResult Measure(Options opt, Point point)
    {
        TorchRuntime.EnsureLoaded();
        var ml = new MLContext(seed: opt.Seed);
        var baseModel = BaseModel.MiniLM();
        List<TrainRow> rows;
        int batch, maxLength;
        if (point.Kind == Point.Length)
        {
            // Generated English, each row cut to the fewest words that reach `Value` tokens: with truncation to
            // MaxSequenceLength = Value every row is exactly that long, so the batches have no padding.
            var tokenizer = baseModel.CreateTokenizer();
            var random = new Random(opt.Seed * 1000 + point.Value);
            rows = Enumerable.Range(0, opt.LengthRows).Select(_ =>
            {
                string text = SyntheticText.OfTokens(tokenizer, random, point.Value);
                return new TrainRow { Sentence1 = text, Label = SyntheticText.LabelOf(text) };
            }).ToList();
            batch = opt.LengthBatch;
            maxLength = point.Value;
        }
        else
        {
            string dataDir = opt.DataDir ?? throw new InvalidOperationException("The rows part needs --data.");
            rows = ReadSst2(Path.Combine(dataDir, "train.tsv"), point.Value, opt.Seed);
            batch = opt.RowsBatch;
            maxLength = opt.MaxLength;
        }
        var train = ml.Data.LoadFromEnumerable(rows);
        long rssBeforeFit = ProcStatus.Read("VmHWM:");

        var options = new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Sentence1", BaseModel = baseModel,
            Epochs = 1, BatchSize = batch, MaxSequenceLength = maxLength, Precision = opt.PeftPrecision,
            GradientCheckpointing = point.Checkpointing, AttentionDropout = opt.AttentionDropout, LogEverySteps = 50,
            MaxTrainingMemory = point.MaxTrainingMemory,
            Progress = p =>
                Console.Error.WriteLine($"  [{point}] {p} RSS {ProcStatus.Read("VmRSS:") / (1024 * 1024)} MiB"),
        };
        // Fit draws new weights (adapters, head) from libtorch's global generator; seed it so runs repeat.
        TorchSharp.torch.manual_seed(opt.Seed);
        var clock = Stopwatch.StartNew();
        var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().LoraTextClassification(options))
            .Fit(train);
        double fitSeconds = clock.Elapsed.TotalSeconds;
        long peak = ProcStatus.Read("VmHWM:");
        using var stage = fitted.LastTransformer;
        var report = stage.TrainingReport
            ?? throw new InvalidOperationException("The fitted stage has no TrainingReport.");
        return new PointResult
        {
            Kind = point.Kind, Value = point.Value, Checkpointing = point.Checkpointing,
            Rows = rows.Count, BatchSize = batch, MaxSequenceLength = maxLength,
            Steps = (rows.Count + batch - 1) / batch,
            Precision = stage.ScoringPrecision,
            TrainingTokens = (long)Math.Round(report.TokensPerSecond * report.Duration.TotalSeconds),
            TokensPerSecond = report.TokensPerSecond, TrainingSeconds = report.Duration.TotalSeconds,
            FitSeconds = fitSeconds,
            FinalTrainLoss = report.FinalTrainLoss, RssBeforeFitBytes = rssBeforeFit, PeakRssBytes = peak,
            Budget = point.Budget, BudgetBytes = report.Memory?.BudgetBytes ?? 0,
            RowsPerPass = report.Memory?.RowsPerPass ?? batch,
            AccumulationSteps = report.Memory?.AccumulationSteps ?? 1,
            BudgetCheckpointing = report.Memory?.GradientCheckpointing ?? point.Checkpointing,
            FusedAttention = report.Memory?.FusedAttention ?? false,
        };
    }

    /// <summary>The first <paramref name="count"/> rows of a seeded shuffle of a headed TSV (Label, Text; no
    /// quoting).</summary>
    private static List<TrainRow> ReadSst2(string path, int count, int seed)
    {
        using var lines = File.ReadLines(path, Encoding.UTF8).GetEnumerator();
        if (!lines.MoveNext()) throw new InvalidDataException($"{path} is empty.");
        var header = lines.Current.Split('\t');
        int label = Array.IndexOf(header, "Label"), text = Array.IndexOf(header, "Text");
        if (label < 0 || text < 0) throw new InvalidDataException($"{path}: the header needs Label and Text columns, " +
            $"got '{lines.Current}'.");
        var all = new List<TrainRow>();
        while (lines.MoveNext())
        {
            if (lines.Current.Length == 0) continue;
            var f = lines.Current.Split('\t');
            if (f.Length <= Math.Max(label, text)) throw new InvalidDataException($"{path}: too few fields in " +
                $"'{lines.Current}'.");
            all.Add(new TrainRow { Label = f[label], Sentence1 = f[text] });
        }
        // The same shuffle for every size, so each training set is a prefix of the next one.
        var order = Enumerable.Range(0, all.Count).ToArray();
        new Random(seed).Shuffle(order);
        return order.Take(Math.Min(count, all.Count)).Select(i => all[i]).ToList();
    }

    /// <summary>A size field of /proc/self/status (e.g. <c>VmHWM:</c>), in bytes; 0 where /proc is absent.</summary>
}

/// <summary>Launches one child per point, prints and writes the tables, draws the charts.</summary>
internal static class Parent
{
    public static int Run(Options opt)
    {
        string? dataDir = null;
        bool runRows = opt.RunRows;
        string? skipped = null;
        if (runRows)
        {
            dataDir = opt.DataDir ?? DataLocator.Find("sst2");
            if (dataDir is null || !File.Exists(Path.Combine(dataDir, "train.tsv")))
            {
                skipped = dataDir is null
                    ? "SST-2 not found: no shared/data/sst2/train.tsv above the current directory or the program's " +
                        "folder (pass --data <folder>); skipping the rows part."
                    : $"SST-2 not found: '{dataDir}' has no train.tsv; skipping the rows part.";
                Console.WriteLine(skipped);
                runRows = false;
                dataDir = null;
            }
        }

        var points = new List<Point>();
        if (opt.RunLengths)
            foreach (int length in opt.Lengths)
                foreach (string budget in opt.Budgets)
                    points.AddRange(opt.CheckpointingSettings.Select(c => new Point(Point.Length, length, c, budget)));
        if (runRows)
            points.AddRange(opt.Sizes.Select(n => new Point(Point.Rows, n, false)));

        var header = new StringBuilder();
        header.AppendLine("# ScalingBenchmark: LoRA training (r = 8, alpha = 16 on query and value) on " +
            $"all-MiniLM-L6-v2{(opt.Quick ? " (--quick smoke run: the figures mean little)" : "")}");
        header.AppendLine();
        header.AppendLine($"- machine: {CpuInfo.Name()}, {Environment.ProcessorCount} logical CPUs; " +
            $"{RuntimeInformation.OSDescription}; {RuntimeInformation.FrameworkDescription}");
        header.AppendLine($"- precision: {opt.Precision} (bf16 in hardware: " +
            $"{(PrecisionPolicy.CpuSupportsBFloat16() ? "yes" : "no")}); libtorch threads per child: " +
                          $"{(opt.Threads > 0 ? Options.Inv(opt.Threads) : "libtorch's default")}; seed {opt.Seed}; " +
                              $"{points.Count} points, each in its own process");
        if (opt.RunLengths)
            header.AppendLine($"- part 1: {opt.LengthRows} generated rows of exactly seq tokens, batch " +
                $"{opt.LengthBatch} " +
                              $"({(opt.LengthRows + opt.LengthBatch - 1) / opt.LengthBatch} steps), 1 epoch, at seq " +
                                  $"= {string.Join(", ", opt.Lengths)}; " +
                              $"GradientCheckpointing {string.Join(" and ", opt.CheckpointingSettings.Select(c =>
                                  c ? "on" : "off"))}; memory budget {string.Join(", ", opt.Budgets)}");
        if (runRows)
            header.AppendLine($"- part 2: SST-2 training phrases ({dataDir}), seeded shuffle, the first " +
                $"{string.Join(", ", opt.Sizes.Select(n => n.ToString("N0", CultureInfo.InvariantCulture)))} rows; " +
                              $"1 epoch, batch {opt.RowsBatch}, max length {opt.MaxLength}");
        if (LoadAverage() is { } load)
            header.AppendLine($"- 1-minute load average before the run: {load:F2}"
                + (load > 0.5 ? "  WARNING: other processes are using the CPUs; figures will be low and noisy" : ""));
        Console.Write(header);
        Console.WriteLine();

        var results = new List<PointResult>();
        var total = Stopwatch.StartNew();
        foreach (var point in points)
        {
            Console.Error.WriteLine($"--- {point} (elapsed {total.Elapsed:mm\\:ss})");
            var r = Launch(opt, dataDir, point);
            Console.Error.WriteLine(r.Error is { } e
                ? $"    {point} failed: {e}. Continuing with the other points."
                : $"    {point}: {r.TokensPerSecond:N0} tokens/s, training {r.TrainingSeconds:F1} s, peak RSS " +
                    $"{Mib(r.PeakRssBytes)}");
            results.Add(r);
        }

        string tables = Tables(results, skipped);
        string footer = $"Total wall time {total.Elapsed:hh\\:mm\\:ss}. Tokens/s and times are noisy when the cores " +
            "are shared with other work; compare within one run.";
        Console.WriteLine(tables);
        Console.WriteLine(footer);

        Directory.CreateDirectory(opt.OutDir);
        string stem = Path.Combine(opt.OutDir, $"scaling{(opt.Quick ? "-quick" : "")}");
        File.WriteAllText(stem + ".md", header + "\n" + tables + "\n" + footer + "\n");
        File.WriteAllText(stem + ".json",
            JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        var written = new List<string> { stem + ".md", stem + ".json" };
        try
        {
            written.AddRange(Chart.Draw(results, stem, opt.Quick));
        }
        catch (Exception ex)
        {
            Console.WriteLine($"The charts failed: {ex.Message}");
        }
        Console.WriteLine($"Wrote {string.Join(", ", written)}.");
        return results.All(r => r.Error is null) ? 0 : 1;
    }

    private static PointResult Launch(Options opt, string? dataDir, Point point)
    {
        var (json, exitCode, tail) =
            ChildProcess.Run(opt.ChildArgs(dataDir).Concat(["--child", point.ToString()]), opt.Threads,
            Child.ResultPrefix, line => Console.Error.WriteLine("  " + line));
        return json is not null ? JsonSerializer.Deserialize<PointResult>(json)!
            : new PointResult { Kind = point.Kind, Value = point.Value, Checkpointing = point.Checkpointing,
                Error = $"child exited with code {exitCode} and no result: {tail}" };
    }

    private static string Tables(List<PointResult> results, string? skipped)
    {
        var sb = new StringBuilder();
        var lengths = results.Where(r => r.Kind == Point.Length).ToList();
        if (lengths.Count > 0)
        {
            sb.AppendLine("Part 1: sequence length (same rows and optimizer steps at each length; \"vs shortest\" " +
                "compares tokens/s with the shortest length, same checkpointing)");
            sb.AppendLine();
            sb.AppendLine("| seq | checkpointing | memory budget: rows per pass × passes | rows x batch (steps) | " +
                "precision | training tokens | tokens/s | vs shortest | training time | peak RSS | RSS before Fit |");
            sb.AppendLine("|---:|:--|:--|---:|:--|---:|---:|---:|---:|---:|---:|");
            foreach (var r in lengths.OrderBy(r => r.Value).ThenBy(r => r.Budget).ThenBy(r => r.Checkpointing))
            {
                string ckpt = (r.Checkpointing ? "on" : "off")
                    + (r.BudgetCheckpointing && !r.Checkpointing ? " (budget: on)" : "");
                string plan = r.Budget == "off" ? "off"
                    : $"{Mib(r.BudgetBytes)}: {r.RowsPerPass} × {r.AccumulationSteps}"
                        + (r.FusedAttention ? ", fused attention" : "");
                if (r.Error is { } e)
                {
                    sb.AppendLine($"| {r.Value} | {ckpt} | {r.Budget} | failed: {Escape(e)} | | | | | | " +
                        $"{Mib(r.PeakRssBytes)} | |");
                    continue;
                }
                var shortest = lengths.Where(x => x.Error is null && x.Checkpointing == r.Checkpointing
                    && x.Budget == r.Budget).MinBy(x => x.Value);
                string vs = shortest is null || shortest.TokensPerSecond <= 0 ? "-"
                    : $"{r.TokensPerSecond / shortest.TokensPerSecond:F2}x";
                sb.AppendLine($"| {r.Value} | {ckpt} | {plan} | {r.Rows} x {r.BatchSize} ({r.Steps}) | " +
                    $"{r.Precision} | " +
                    $"{r.TrainingTokens:N0} | {r.TokensPerSecond:N0} | {vs} | " +
                              $"{Seconds(r.TrainingSeconds)} | {Mib(r.PeakRssBytes)} | {Mib(r.RssBeforeFitBytes)} |");
            }
            var pairs = lengths.Where(r => r.Error is null).GroupBy(r => (r.Value, r.Budget))
                .Select(g => (Seq: g.Key.Value, Off: g.FirstOrDefault(r => !r.Checkpointing),
                    On: g.FirstOrDefault(r => r.Checkpointing)))
                .Where(p => p.Off is not null && p.On is not null).OrderBy(p => p.Seq).ToList();
            if (pairs.Count > 0)
            {
                sb.AppendLine();
                sb.AppendLine("Checkpointing on / off: " + string.Join("; ", pairs.Select(p =>
                    $"seq {p.Seq}: peak RSS {Ratio(p.On!.PeakRssBytes, p.Off!.PeakRssBytes)}, tokens/s " +
                        $"{Ratio(p.On.TokensPerSecond, p.Off.TokensPerSecond)}")) + ". " +
                    "GradientCheckpointing is only set on the stage; where this build of the library does not " +
                        "implement it, the two rows differ by noise alone.");
            }
            sb.AppendLine();
        }
        var sizes = results.Where(r => r.Kind == Point.Rows).ToList();
        if (sizes.Count > 0)
        {
            sb.AppendLine("Part 2: training-set size (SST-2, 1 epoch)");
            sb.AppendLine();
            sb.AppendLine("| training rows | batch (steps) | max length | precision | training tokens | tokens/s | " +
                "training time | Fit wall time | peak RSS | RSS before Fit |");
            sb.AppendLine("|---:|---:|---:|:--|---:|---:|---:|---:|---:|---:|");
            foreach (var r in sizes.OrderBy(r => r.Value))
            {
                if (r.Error is { } e)
                {
                    sb.AppendLine($"| {r.Value:N0} | failed: {Escape(e)} | | | | | | | {Mib(r.PeakRssBytes)} | |");
                    continue;
                }
                sb.AppendLine($"| {r.Rows:N0} | {r.BatchSize} ({r.Steps:N0}) | {r.MaxSequenceLength} | {r.Precision} " +
                    $"| {r.TrainingTokens:N0} | {r.TokensPerSecond:N0} | " +
                              $"{Seconds(r.TrainingSeconds)} | {Seconds(r.FitSeconds)} | {Mib(r.PeakRssBytes)} | " +
                                  $"{Mib(r.RssBeforeFitBytes)} |");
            }
            sb.AppendLine();
        }
        else if (skipped is not null)
        {
            sb.AppendLine("Part 2: " + skipped);
            sb.AppendLine();
        }
        sb.AppendLine("Tokens are real (non-padding) training tokens (TrainingReport: tokens/s x duration). Training " +
            "time is the training loop; " +
                      "Fit wall time adds reading and tokenizing the rows and building the model. Peak RSS is the " +
                          "child's VmHWM right after Fit; " +
                      "RSS before Fit is its VmHWM once the runtime, libtorch, the base model's files and the rows " +
                          "are loaded.");
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("|", "\\|").Replace("\n", " ").Replace("\r", "");
    private static string Ratio(double a, double b) => b > 0 ? $"{a / b:F2}x" : "-";
    private static string Seconds(double s) => s < 10 ? $"{s:F1} s" : $"{s:F0} s";
    internal static string Mib(long bytes) => bytes > 0 ? $"{bytes / (1024.0 * 1024):N0} MiB" : "-";

    private static double? LoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg")
                ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture)
                : null;
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
            return null;
        }
    }
}

/// <summary>Tokens/s (left axis) and peak RSS (right axis) against the sequence length or the training-set
/// size.</summary>
internal static class Chart
{
    public static IEnumerable<string> Draw(List<PointResult> results, string stem, bool quick)
    {
        var written = new List<string>();
        var lengths = results.Where(r => r.Kind == Point.Length && r.Error is null).ToList();
        if (lengths.Count > 0)
        {
            var xs = lengths.Select(r => r.Value).Distinct().Order().ToArray();
            var plt = new ScottPlot.Plot();
            foreach (bool ckpt in new[] { false, true })
            {
                var series = lengths.Where(r => r.Checkpointing == ckpt).OrderBy(r => r.Value).ToList();
                if (series.Count == 0) continue;
                double[] x = series.Select(r => (double)Array.IndexOf(xs, r.Value)).ToArray();
                AddSeries(plt, x, series, ckpt ? " (checkpointing)" : "", ckpt);
            }
            Finish(plt, lengths, xs.Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray(),
                "sequence length (tokens)",
                   $"LoRA training vs sequence length{(quick ? " (quick smoke run)" : "")}");
            string path = stem + "-length.png";
            plt.SavePng(path, 900, 560);
            written.Add(path);
        }
        var sizes = results.Where(r => r.Kind == Point.Rows && r.Error is null).OrderBy(r => r.Rows).ToList();
        if (sizes.Count > 0)
        {
            var plt = new ScottPlot.Plot();
            AddSeries(plt, sizes.Select((_, i) => (double)i).ToArray(), sizes, "", dashed: false);
            Finish(plt, sizes, sizes.Select(r => r.Rows.ToString("N0", CultureInfo.InvariantCulture)).ToArray(),
                "SST-2 training rows (1 epoch)",
                   $"LoRA training vs training-set size{(quick ? " (quick smoke run)" : "")}");
            string path = stem + "-rows.png";
            plt.SavePng(path, 900, 560);
            written.Add(path);
        }
        return written;
    }

    private static void AddSeries(ScottPlot.Plot plt, double[] x, List<PointResult> series, string suffix, bool dashed)
    {
        var speed = plt.Add.Scatter(x, series.Select(r => r.TokensPerSecond).ToArray());
        speed.LegendText = "tokens/s" + suffix;
        speed.Color = ScottPlot.Colors.Blue;
        speed.MarkerSize = 8;
        var rss = plt.Add.Scatter(x, series.Select(r => r.PeakRssBytes / (1024.0 * 1024)).ToArray());
        rss.LegendText = "peak RSS (MiB)" + suffix;
        rss.Color = ScottPlot.Colors.OrangeRed;
        rss.MarkerSize = 8;
        rss.Axes.YAxis = plt.Axes.Right;
        if (dashed)
        {
            speed.LinePattern = ScottPlot.LinePattern.Dashed;
            rss.LinePattern = ScottPlot.LinePattern.Dashed;
        }
    }

    private static void Finish(ScottPlot.Plot plt, List<PointResult> shown, string[] labels, string xLabel,
        string title)
    {
        plt.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray(), labels);
        plt.Axes.SetLimitsX(-0.3, labels.Length - 0.7);
        plt.XLabel(xLabel);
        plt.YLabel("training tokens/s");
        plt.Axes.Right.Label.Text = "peak RSS (MiB)";
        plt.Title(title);
        plt.ShowLegend(ScottPlot.Alignment.LowerRight);
        // Both axes from zero, so a flat line looks flat and a doubling looks like one.
        plt.Axes.SetLimitsY(0, Math.Max(1, shown.Max(r => r.TokensPerSecond)) * 1.15, plt.Axes.Left);
        plt.Axes.SetLimitsY(0, Math.Max(1, shown.Max(r => r.PeakRssBytes / (1024.0 * 1024))) * 1.15, plt.Axes.Right);
    }
}
