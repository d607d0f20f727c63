using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.Sweep;

/// <summary>
/// --workers n: the same sweep run as n worker processes of one study (PeftSweep.SetStorage) with --threads libtorch
/// threads each, then as one worker with n × --threads threads; both get --minutes and the same rows. It answers
/// whether coordinating through a database beats giving one process the cores (small models scale poorly across
/// threads, so separate trials in parallel should win). The configurations run one after the other, so each has the
/// machine to itself. Search only (storage refuses refit and ensemble); successive halving is on, as in the sweep arm.
/// </summary>
internal static class WorkersComparison
{
    /// <summary>What one worker process reports.</summary>
    internal sealed record WorkerResult(int Trials, string? Error);

    public static int Run(Options opt, string data)
    {
        string storage = opt.Storage ?? "sqlite:" + Path.GetFullPath(Path.Combine(opt.Out,
            $"workers-{DateTime.UtcNow:yyyyMMdd-HHmmss}.db"));
        Console.WriteLine($"{opt.Workers} workers × {opt.Threads} thread(s) vs 1 worker × "
            + $"{opt.Workers * opt.Threads} threads, {opt.Minutes:G} minute(s) each, {opt.TrainRows} training rows; "
            + $"storage {storage}.");
        var rows = new List<string>();
        foreach (var (workers, threads) in new[] { (opt.Workers, opt.Threads), (1, opt.Workers * opt.Threads) })
        {
            string study = $"w{workers}-t{threads}-{Guid.NewGuid():N}"[..24];
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var launched = Enumerable.Range(0, workers).Select(i => Task.Run(() => ChildProcess.Run(
                opt.ChildArgs(data).Concat(["--arm", "worker", "--storage", storage, "--study", study]), threads,
                Options.ResultPrefix, line => { if (line.StartsWith("[worker]", StringComparison.Ordinal))
                    Console.WriteLine($"[{study}#{i}] {line}"); }))).ToArray();
            var results = launched.Select(t => t.GetAwaiter().GetResult()).ToList();
            double seconds = clock.Elapsed.TotalSeconds;
            string? error = results.Select(r => r.ResultJson is null ? $"exit {r.ExitCode}: {r.ErrorTail}"
                : JsonSerializer.Deserialize<WorkerResult>(r.ResultJson)!.Error).FirstOrDefault(e => e is not null);
            rows.Add(error is not null ? $"| {workers} × {threads} | failed: {error} | | | | |" : Row(opt, data,
                storage, study, workers, threads, seconds));
        }
        var sb = new StringBuilder()
            .AppendLine($"{Parent.DataName(data)}, {opt.TrainRows} training rows, {opt.Minutes:G} min, "
                + $"seed {opt.Seed}; CPU {CpuInfo.Name()} ({Environment.ProcessorCount} logical cores; "
                + $"flags {CpuInfo.RelevantFlags()})")
            .AppendLine()
            .AppendLine("| workers × threads | trials | succeeded | best validation accuracy | dev accuracy "
                + "| wall s |")
            .AppendLine("|---|---:|---:|---:|---:|---:|");
        rows.ForEach(r => sb.AppendLine(r));
        Console.WriteLine(sb);
        Directory.CreateDirectory(opt.Out);
        File.WriteAllText(Path.Combine(opt.Out, "sweep-workers.md"), sb.ToString());
        return rows.Any(r => r.Contains("failed:", StringComparison.Ordinal)) ? 1 : 0;
    }

    private static string Row(Options opt, string data, string storage, string study, int workers, int threads,
        double seconds)
    {
        var board = PeftSweep.LoadStudy(storage, study);
        var ml = new MLContext(opt.Seed);
        var (_, _, dev) = Arms.Load(ml, opt, data);
        double devAccuracy = ml.MulticlassClassification.Evaluate(
            PeftSweep.LoadBest(storage, study, ml).Transform(dev)).MicroAccuracy;
        return string.Create(CultureInfo.InvariantCulture,
            $"| {workers} × {threads} | {board.Trials.Count} | "
            + $"{board.Trials.Count(t => t.Status == TrialStatus.Succeeded)} | {board.BestTrial.Metric:F4} | "
            + $"{devAccuracy:F4} | {seconds:F0} |");
    }

    /// <summary>The "worker" arm: one worker of the study; prints a RESULT line.</summary>
    public static int Worker(Options opt, string data)
    {
        WorkerResult result;
        try
        {
            var ml = new MLContext(opt.Seed);
            var (train, validation, _) = Arms.Load(ml, opt, data);
            int trials = 0;
            ml.Peft().CreateSweep()
                .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Accuracy)
                .SetTuner(PeftTuner.CostFrugal(opt.Seed)).SetEarlyStopping(reductionFactor: 3, minEpochs: 1)
                .SetTrainingTimeInSeconds(opt.Minutes * 60)
                .SetStorage(opt.Storage!, opt.Study!)
                .SetMonitor(e =>
                {
                    if (e.Kind != SweepEventKind.TrialEnded || e.Result is not { } r) return;
                    trials++;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"[worker] trial {r.Id} {r.Status} {r.Metric:F4} in {r.Duration.TotalSeconds:F0} s"));
                })
                .RunAsync().GetAwaiter().GetResult();
            result = new WorkerResult(trials, null);
        }
        catch (Exception e)
        {
            result = new WorkerResult(0, $"{e.GetType().Name}: {e.Message}");
        }
        Console.WriteLine(Options.ResultPrefix + JsonSerializer.Serialize(result));
        return result.Error is null ? 0 : 1;
    }
}
