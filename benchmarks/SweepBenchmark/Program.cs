// SweepBenchmark: does an AutoML-style sweep beat the default LoRA stage given the same wall-clock time?
//
//   dotnet run -c Release --project benchmarks/SweepBenchmark [-- options]
//
// Two arms run at the same time, each in its own process with the same number of libtorch threads, on the same rows:
//   sweep  ml.Peft().CreateSweep(): cost-frugal tuner over the default search space, successive halving, a wall-clock
//          budget of --minutes of which --refit is kept to retrain the --refit-configurations best configurations;
// trials          train on the training rows and are ranked on held-out validation rows; by default the refits then
// train on          the training and validation rows together and the sweep returns their average.
//   lora   ml.Peft().LoraTextClassification with every default except MaxTrainingTime = --minutes (and epochs
// unbounded):          "train for N minutes", with the learning rate decaying by the clock.
// Both final models are scored on SST-2's dev set, which neither arm saw. Another single-text folder of shared/data
// (Label<TAB>Text train.tsv and dev.tsv, e.g. cola) can stand in with --data; the tables then name that folder.
//
// Options:
//   --minutes <m>          budget of each arm (default 20)
//   --train-rows <n>       training rows drawn (seeded shuffle) from sst2/train.tsv (default 6000)
//   --validation-rows <n>  further rows from train.tsv the sweep ranks trials on (default 1000)
//   --threads <n>          libtorch threads in each arm's process (default 1: the two arms share 2 cores)
//   --seed <n>             subsample, MLContext and tuner seed (default 1)
//   --refit <f>            share of the sweep's budget kept to retrain its best configurations (PeftSweep.SetRefit;
// default 0.5)
//   --refit-configurations <n>  how many of the best configurations share that reserve (default 2)
//   --refit-data <all|train>    all (default): the refits also learn from the validation rows (SetRefit onAllData),
//                          cross-fitted when there are several (refit k holds out the k-th fold of the validation rows,
//                          trains on the rest and is scored on it), and the best model is their equal-weight average;
//                          train: they train on the training rows, keep their best validation epoch, and --ensemble
//                          averages the best models
//   --keep-default <yes|no>     yes (default): with several refits, the default configuration is one of them when the
//                          search ran it (SetRefit keepDefault); no: the best configurations alone
//   --ensemble <n>         with --refit-data train: ensemble candidates (PeftSweep.SetEnsemble; default 5; 0 = none)
//   --data <folder>        folder with train.tsv and dev.tsv (default: shared/data/sst2 found by walking up from here)
//   --out <folder>         table (.md), leaderboard (.csv) and chart (.png) (default artifacts/sweep-benchmark)
//   --quick                smoke run: 1 minute, 400 training rows, 200 validation rows
//   --workers <n>          instead of the two arms: the sweep as n worker processes of one study (PeftSweep.SetStorage)
//                          with --threads threads each, then as 1 worker with n × --threads threads (one after the
//                          other); writes sweep-workers.md. E.g. --workers 2 --threads 1 --minutes 20
//   --storage <string>     with --workers: the study database (default a new SQLite file in --out); a PostgreSQL
//                          connection string lets the workers of one configuration run on several machines
// Each arm prints one "RESULT {json}" line; the parent prints both side by side.
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Sweep;

var opt = Options.Parse(args);
if (opt is null) { Console.WriteLine(Options.Usage); return 2; }
string? data = opt.Data ?? DataLocator.Find("sst2");
if (data is null || !File.Exists(Path.Combine(data, "train.tsv")) || !File.Exists(Path.Combine(data, "dev.tsv")))
{
    Console.WriteLine("Data not found: no shared/data/sst2 folder above the current directory or the program's " +
        "folder. Pass --data <folder with train.tsv and dev.tsv>. Nothing to benchmark.");
    return 1;
}
if (opt.Arm == "worker") return WorkersComparison.Worker(opt, data);
if (opt.Arm is { } arm) return Arms.Run(arm, opt, data);
if (opt.Workers > 0) return WorkersComparison.Run(opt, data);
return Parent.Run(opt, data);

internal sealed record Options(double Minutes, int TrainRows, int ValidationRows, int Threads, int Seed, string? Data,
    string Out, string? Arm, double Refit = 0.5, int Ensemble = 5, int RefitConfigurations = 2,
    bool RefitAllData = true, bool KeepDefault = true, int Workers = 0, string? Storage = null, string? Study = null)
{
    public const string Usage = "usage: SweepBenchmark [--minutes m] [--train-rows n] [--validation-rows n] " +
        "[--threads n] [--seed n] [--refit f] [--refit-configurations n] [--refit-data all|train] [--keep-default " +
        "yes|no] [--ensemble n] [--data folder] [--out folder] [--quick] [--workers n [--storage string]]";
    public const string ResultPrefix = "RESULT ";
    // A failed arm reports NaN accuracies.
    public static readonly JsonSerializerOptions Json =
        new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static Options? Parse(string[] args)
    {
        var o = new Options(20, 6000, 1000, 1, 1, null, Path.Combine("artifacts", "sweep-benchmark"), null);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt(int min) => int.Parse(Next(), CultureInfo.InvariantCulture) is var v && v >= min ? v
                : throw new ArgumentException($"{args[i - 1]} must be at least {min}");
            switch (args[i])
            {
                case "--minutes": o = o with { Minutes = double.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--train-rows": o = o with { TrainRows = NextInt(10) }; break;
                case "--validation-rows": o = o with { ValidationRows = NextInt(10) }; break;
                case "--threads": o = o with { Threads = NextInt(1) }; break;
                case "--seed": o = o with { Seed = NextInt(0) }; break;
                case "--data": o = o with { Data = Next() }; break;
                case "--out": o = o with { Out = Next() }; break;
                case "--quick": o = o with { Minutes = 1, TrainRows = 400, ValidationRows = 200 }; break;
                case "--arm": o = o with { Arm = Next() }; break;
                case "--workers": o = o with { Workers = NextInt(2) }; break;
                case "--storage": o = o with { Storage = Next() }; break;
                case "--study": o = o with { Study = Next() }; break;
                case "--refit": o = o with { Refit = double.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--ensemble": o = o with { Ensemble = NextInt(0) }; break;
                case "--keep-default": o = o with { KeepDefault = Next() switch { "yes" => true, "no" => false,
                    var v => throw new ArgumentException($"--keep-default must be yes or no, got '{v}'") } }; break;
                case "--refit-configurations": o = o with { RefitConfigurations = NextInt(1) }; break;
                case "--refit-data": o = o with { RefitAllData = Next() switch { "all" => true, "train" => false,
                    var v => throw new ArgumentException($"--refit-data must be all or train, got '{v}'") } }; break;
                case "-h" or "--help": return null;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (!(o.Minutes > 0)) throw new ArgumentException("--minutes must be positive");
        if (!(o.Refit > 0 && o.Refit < 1)) throw new ArgumentException("--refit must be in (0, 1)");
        if (o.Ensemble == 1) throw new ArgumentException("--ensemble must be 0 (off) or at least 2");
        if (o.Arm is not (null or "sweep" or "lora" or "worker"))
            throw new ArgumentException("--arm must be sweep, lora or worker");
        return o;
    }

    /// <summary>The arguments an arm's process gets: everything but --arm, which the parent adds.</summary>
    public IEnumerable<string> ChildArgs(string data) =>
    [
        "--minutes", Inv(Minutes), "--train-rows", Inv(TrainRows), "--validation-rows", Inv(ValidationRows),
        "--threads", Inv(Threads), "--seed", Inv(Seed), "--data", data, "--out", Out, "--refit", Inv(Refit),
        "--refit-configurations", Inv(RefitConfigurations), "--ensemble", Inv(Ensemble),
        "--refit-data", RefitAllData ? "all" : "train", "--keep-default", KeepDefault ? "yes" : "no",
    ];

    public static string Inv(double v) => v.ToString(CultureInfo.InvariantCulture);
}

/// <summary>What one arm reports.</summary>
internal sealed record ArmResult
{
    public string Arm { get; init; } = "";
    public double DevAccuracy { get; init; } = double.NaN;
    public double ValidationAccuracy { get; init; } = double.NaN;
    public double Seconds { get; init; }
    public int Trials { get; init; }
    public int Epochs { get; init; }
    public string Configuration { get; init; } = "";
    public long TrainableParameters { get; init; }
    public long PeakRssBytes { get; init; }
    public string? Error { get; init; }
    /// <summary>One character per dev row: '1' where the arm's prediction is right (for the paired test).</summary>
    public string DevCorrect { get; init; } = "";
}

internal static class Arms
{
    public static int Run(string arm, Options opt, string data)
    {
        var clock = Stopwatch.StartNew();
        ArmResult result;
        try
        {
            var ml = new MLContext(opt.Seed);
            var (train, validation, dev) = Load(ml, opt, data);
            result = arm == "sweep" ? Sweep(ml, opt, Parent.DataName(data), train, validation, dev)
                : Lora(ml, opt, train, validation, dev);
        }
        catch (Exception e)
        {
            result = new ArmResult { Arm = arm, Error = $"{e.GetType().Name}: {e.Message}" };
        }
        result = result with { Seconds = clock.Elapsed.TotalSeconds, PeakRssBytes = ProcStatus.Read("VmHWM:") };
        Console.WriteLine(Options.ResultPrefix + JsonSerializer.Serialize(result, Options.Json));
        return result.Error is null ? 0 : 1;
    }

    public static (IDataView Train, IDataView Validation, IDataView Dev) Load(MLContext ml, Options opt, string data)
    {
        static List<Row> Read(string path) => File.ReadLines(path).Skip(1)
            .Select(l => l.Split('\t')).Where(f => f.Length >= 2).Select(f => new Row { Label = f[0], Text = f[1] })
            .ToList();
        var all = Read(Path.Combine(data, "train.tsv"));
        var rng = new Random(opt.Seed);
        for (int i = all.Count - 1; i > 0; i--) { int j = rng.Next(i + 1); (all[i], all[j]) = (all[j], all[i]); }
        if (all.Count < opt.TrainRows + opt.ValidationRows) throw new InvalidOperationException("train.tsv has " +
            $"{all.Count} rows, fewer than --train-rows + --validation-rows.");
        return (ml.Data.LoadFromEnumerable(all.Take(opt.TrainRows).ToList()),
                ml.Data.LoadFromEnumerable(all.Skip(opt.TrainRows).Take(opt.ValidationRows).ToList()),
                ml.Data.LoadFromEnumerable(Read(Path.Combine(data, "dev.tsv"))));
    }

    private static double Accuracy(MLContext ml, ITransformer model, IDataView data) =>
        ml.MulticlassClassification.Evaluate(model.Transform(data)).MicroAccuracy;

    private static string Correct(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        return string.Concat(scored.GetColumn<uint>("Label")
            .Zip(scored.GetColumn<uint>("PredictedLabel"), (y, p) => y == p ? '1' : '0'));
    }

    // Every dev row has a label, so accuracy is the share of right rows (one scoring pass serves both).
    private static double Share(string correct) => correct.Count(c => c == '1') / (double)correct.Length;

    private static ArmResult Sweep(MLContext ml, Options opt, string name, IDataView train, IDataView validation,
        IDataView dev)
    {
        var sweep = ml.Peft().CreateSweep()
            .SetDataset(train, validation)
            .SetLabel("Label").SetText("Text")
            .SetMetric(PeftMetric.Accuracy)
            .SetTuner(PeftTuner.CostFrugal(opt.Seed))
            .SetEarlyStopping(reductionFactor: 3, minEpochs: 1)
            .SetTrainingTimeInSeconds(opt.Minutes * 60)
            .SetRefit(opt.Refit, opt.RefitConfigurations, opt.RefitAllData, opt.KeepDefault)
            .SetMonitor(e =>
            {
                if (e.Kind == SweepEventKind.TrialEnded && e.Result is { } r)
                    Console.Error.WriteLine(r.Ensemble.Count > 0
                        ? $"[sweep] ensemble {r.Id} {r.Status} {r.Metric:F4}: " +
                            $"{string.Join(", ", r.Ensemble.Select(m => $"{m.TrialId} × {m.Weight:F2}"))}"
                        : $"[sweep] {(r.Refit ? "refit" : "trial")} {r.Id} {r.Parameters.Method} {r.Status} " +
                            $"{r.Metric:F4} in {r.Duration.TotalSeconds:F0} s: {r.Parameters.ToJson()}");
            });
        if (opt.Ensemble >= 2 && !opt.RefitAllData) sweep.SetEnsemble(opt.Ensemble);
        var result = sweep.RunAsync().GetAwaiter().GetResult();
        Directory.CreateDirectory(opt.Out);
        result.WriteCsv(Path.Combine(opt.Out, "sweep-leaderboard.csv"));
        Chart.Draw(result, Path.Combine(opt.Out, "sweep-vs-default-lora.png"), name, opt.RefitAllData);
        var best = result.BestTrial;
        string configuration = (best.Refit ? "refit of " : "trial ") + best.Parameters.ToJson();
        if (result.BestModel is TransformerChain<ITransformer> chain
            && chain.LastTransformer is PeftEnsembleTransformer ensemble)
        {
            // Each member alone on dev as well, to show what the averaging adds.
            var keys = chain.Take(chain.Count() - 1).ToArray();
            configuration = "ensemble of " + string.Join("; ", ensemble.Members.Select((m, i) =>
            {
                var trial = result.Trials.First(t => t.Id == best.Ensemble[i].TrialId);
                double alone = Accuracy(ml, new TransformerChain<ITransformer>([.. keys, m]), dev);
                return string.Create(CultureInfo.InvariantCulture,
                    $"{(trial.Refit ? "refit" : "trial")} {trial.Id} × {best.Ensemble[i].Weight:F2} " +
                    $"({(trial.TrainedOnValidation ? "in-sample "
                        : opt.RefitAllData && trial.Refit ? "held-out fold " : "")}validation {trial.Metric:F4}, " +
                    $"dev alone {alone:F4}) {trial.Parameters.ToJson()}");
            }));
        }
        string correct = Correct(result.BestModel!, dev);
        return new ArmResult
        {
            // A model trained on the validation rows has no held-out validation accuracy.
            Arm = "sweep", DevAccuracy = Share(correct), DevCorrect = correct,
            ValidationAccuracy = best.TrainedOnValidation ? double.NaN : best.Metric, Trials = result.Trials.Count,
            Configuration = configuration, TrainableParameters = best.TrainableParameters,
        };
    }

    private static ArmResult Lora(MLContext ml, Options opt, IDataView train, IDataView validation, IDataView dev)
    {
        var options = new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text",
            Epochs = 100_000, MaxTrainingTime = TimeSpan.FromMinutes(opt.Minutes),
        };
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(options))
            .Fit(train);
        var stage = model.LastTransformer;
        string correct = Correct(model, dev);
        return new ArmResult
        {
            Arm = "lora", DevAccuracy = Share(correct), DevCorrect = correct,
            ValidationAccuracy = Accuracy(ml, model, validation), Trials = 1,
            Epochs = stage.TrainingReport?.EpochsRun ?? 0, TrainableParameters = stage.TrainableParameterCount,
            Configuration =
                $"defaults (LoRA r=8, lr {stage.Method.DefaultLearningRate:G3}, batch {options.BatchSize}, max " +
                $"length {options.MaxSequenceLength}), {stage.TrainingReport?.EpochsRun} epoch(s) in the time limit",
        };
    }
}

internal static class Parent
{
    public static int Run(Options opt, string data)
    {
        Console.WriteLine($"Sweep vs default LoRA: {opt.Minutes:G} minute(s) each, {opt.TrainRows} training rows, " +
            $"{opt.ValidationRows} validation rows (sweep only), "
            + $"{DataName(data)} dev for both; {opt.Threads} libtorch thread(s) per arm, both arms at once on " +
                $"{Environment.ProcessorCount} logical cores.");
        var arms = new[] { "sweep", "lora" }.Select(a => Task.Run(() => Launch(opt, data, a))).ToArray();
        var results = arms.Select(t => t.GetAwaiter().GetResult()).ToList();
        string table = Table(opt, DataName(data), results);
        Console.WriteLine(table);
        Directory.CreateDirectory(opt.Out);
        File.WriteAllText(Path.Combine(opt.Out, "sweep-vs-default-lora.md"), table);
        Console.WriteLine($"Wrote {Path.Combine(opt.Out, "sweep-vs-default-lora.md")}, sweep-leaderboard.csv and " +
            "sweep-vs-default-lora.png.");
        return results.All(r => r.Error is null) ? 0 : 1;
    }

    /// <summary>"SST-2" for the default data, else the data folder's name.</summary>
    public static string DataName(string data) => Path.GetFileName(Path.TrimEndingDirectorySeparator(data)) is var name
        && name != "sst2" ? name : "SST-2";

    private static string Table(Options opt, string name, List<ArmResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"{name}, {opt.TrainRows} training rows, {opt.Minutes:G} min per arm, {opt.Threads} thread(s) " +
            $"per arm, seed {opt.Seed}");
        sb.AppendLine();
        sb.AppendLine($"| arm | {name} dev accuracy | held-out validation accuracy | wall s | trials | trainable " +
            "params | peak RSS MB | configuration |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---|");
        foreach (var r in results)
            sb.AppendLine(r.Error is not null
                ? $"| {r.Arm} | failed: {r.Error} | | {r.Seconds:F0} | | | | |"
                : string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Arm} | {r.DevAccuracy:F4} | {(double.IsNaN(r.ValidationAccuracy) ? "– (trained on it)"
                        : r.ValidationAccuracy.ToString("F4", CultureInfo.InvariantCulture))} | {r.Seconds:F0} | " +
                    $"{r.Trials} | {r.TrainableParameters:N0} | {r.PeakRssBytes / 1048576.0:F0} | " +
                    $"{r.Configuration.Replace("|", "/")} |"));
        var sweep = results.FirstOrDefault(r => r.Arm == "sweep" && r.Error is null);
        var lora = results.FirstOrDefault(r => r.Arm == "lora" && r.Error is null);
        if (sweep is not null && lora is not null)
            sb.AppendLine().AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"Sweep best minus default LoRA on {name} dev: " +
                    $"{100 * (sweep.DevAccuracy - lora.DevAccuracy):+0.0;-0.0} points " +
                    $"({(sweep.DevAccuracy > lora.DevAccuracy ? "the sweep wins" : "the sweep does not win")})."))
              .AppendLine(McNemar(sweep.DevCorrect, lora.DevCorrect));
        return sb.ToString();
    }

    /// <summary>
    /// The paired test on the same dev rows: only rows where exactly one arm is right carry information; under "no
    /// difference" each of them is the sweep's with probability 1/2 (exact two-sided binomial p-value).
    /// </summary>
    private static string McNemar(string sweep, string lora)
    {
        if (sweep.Length != lora.Length || sweep.Length == 0)
            return "Paired test: the arms scored different row counts.";
        int onlySweep = sweep.Zip(lora).Count(p => p.First == '1' && p.Second == '0');
        int onlyLora = sweep.Zip(lora).Count(p => p.First == '0' && p.Second == '1');
        int n = onlySweep + onlyLora, k = Math.Min(onlySweep, onlyLora);
        // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
        double tail = 0;
        for (int i = 0; i <= k; i++) tail += Math.Exp(LogChoose(n, i) - n * Math.Log(2));
        double p = Math.Min(1, 2 * tail);
        return string.Create(CultureInfo.InvariantCulture,
            $"Paired on the {sweep.Length} dev rows: only the sweep right on {onlySweep}, only default LoRA right on " +
                $"{onlyLora}; exact McNemar p = {p:G3}.");
    }

    private static double LogChoose(int n, int k)
    {
        double r = 0;
        for (int i = 1; i <= k; i++) r += Math.Log(n - k + i) - Math.Log(i);
        return r;
    }

    private static ArmResult Launch(Options opt, string data, string arm)
    {
        var (json, exitCode, tail) =
            ChildProcess.Run(opt.ChildArgs(data).Concat(["--arm", arm]), opt.Threads, Options.ResultPrefix, line =>
        {
            // The sweep's monitor lines, the trials' log lines and the LoRA arm's time-limit line; not every progress
            // report.
            if (line.StartsWith("[sweep]", StringComparison.Ordinal)) Console.WriteLine(line);
            else if (line.Contains("Trial ", StringComparison.Ordinal)
                || line.Contains("Stopped at the time limit", StringComparison.Ordinal))
                Console.WriteLine($"[{arm}] {line}");
        });
        return json is not null ? JsonSerializer.Deserialize<ArmResult>(json, Options.Json)!
            : new ArmResult { Arm = arm,
                Error = $"the arm's process exited with code {exitCode} and no result: {tail}" };
    }
}

/// <summary>One row of a single-text TSV (SST-2's layout).</summary>
internal sealed class Row
{
    public string Label { get; set; } = "";
    public string Text { get; set; } = "";
}

/// <summary>Each trial's validation accuracy at the wall-clock time it ended, the best so far as a step line.</summary>
internal static class Chart
{
    public static void Draw(PeftSweepResult result, string path, string name, bool refitOnAllData)
    {
        var plt = new ScottPlot.Plot();
        double end = 0, best = double.NegativeInfinity;
        var (ends, metrics, bests, prunedEnds, prunedMetrics) =
            (new List<double>(), new List<double>(), new List<double>(), new List<double>(), new List<double>());
        var (refitEnds, refitMetrics) = (new List<double>(), new List<double>());
        var (ensembleEnds, ensembleMetrics) = (new List<double>(), new List<double>());
        // A single refit on all the data scores rows it trained on: its point is drawn, but named as in-sample.
        // Cross-fitted refits are scored on the fold they held out, and their average on the out-of-fold scores.
        bool inSample = result.Trials.Any(t => t.TrainedOnValidation);
        foreach (var t in result.Trials)
        {
            end += t.Duration.TotalSeconds / 60;
            if (t.Ensemble.Count > 0) { ensembleEnds.Add(end); ensembleMetrics.Add(t.Metric); }
            else if (t.Refit)
            {
                if (t.Status == TrialStatus.Succeeded) { refitEnds.Add(end); refitMetrics.Add(t.Metric); }
            }
            else if (t.Status == TrialStatus.Succeeded)
            {
                best = Math.Max(best, t.Metric);
                ends.Add(end); metrics.Add(t.Metric); bests.Add(best);
            }
            else if (t.Status == TrialStatus.Pruned) { prunedEnds.Add(end); prunedMetrics.Add(best); }
        }
        if (ends.Count == 0) return;
        var done = plt.Add.ScatterPoints(ends.ToArray(), metrics.ToArray());
        done.LegendText = "trial (validation accuracy)";
        var line = plt.Add.ScatterLine(ends.ToArray(), bests.ToArray());
        line.ConnectStyle = ScottPlot.ConnectStyle.StepHorizontal;
        line.LegendText = "best so far";
        if (prunedEnds.Count > 0)
        {
            var pruned = plt.Add.ScatterPoints(prunedEnds.ToArray(), prunedMetrics.ToArray());
            pruned.MarkerShape = ScottPlot.MarkerShape.Cross;
            pruned.LegendText = "pruned by successive halving (drawn at the best so far)";
        }
        if (refitEnds.Count > 0)
        {
            var refit = plt.Add.ScatterPoints(refitEnds.ToArray(), refitMetrics.ToArray());
            refit.MarkerShape = ScottPlot.MarkerShape.FilledDiamond;
            refit.MarkerSize = 12;
            refit.LegendText = inSample ? "refit on training + validation rows (in-sample)"
                : refitOnAllData ? "refit on training + other validation folds (on its fold)"
                    : "refit of a best configuration";
        }
        if (ensembleEnds.Count > 0)
        {
            var ensemble = plt.Add.ScatterPoints(ensembleEnds.ToArray(), ensembleMetrics.ToArray());
            ensemble.MarkerShape = ScottPlot.MarkerShape.FilledTriangleUp;
            ensemble.MarkerSize = 12;
            ensemble.LegendText = inSample ? "average of those refits (in-sample)"
                : refitOnAllData ? "average of those refits (out-of-fold)" : "ensemble of the best models";
        }
        plt.XLabel("minutes into the sweep");
        plt.YLabel("validation accuracy");
        plt.Title($"Sweep progress on {name}");
        plt.ShowLegend();
        plt.SavePng(path, 900, 520);
    }
}
