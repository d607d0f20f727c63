// Sweep: an AutoML-style search over PEFT methods and hyper-parameters on the embedded MiniLM.
//   dotnet run -c Release --project examples/Sweep [-- data.tsv [seconds]]   (TSV with a header: Label<TAB>Text)
// Runs the cost-frugal tuner for a few minutes, prints the leaderboard as trials finish, averages the best three models
// when that validates better, saves the best model, reloads it and scores the held-out test rows.
//
// Several workers on one study (PeftSweep.SetStorage; see docs/sweep-storage.md):
//   dotnet run -c Release --project examples/Sweep -- --storage sqlite:sweep.db --study sst [data.tsv [seconds]]
// Run the same command in a second terminal (or, with --storage postgresql://user:pw@host/db, on another machine):
// the workers share the study's trials and budget, and each ends with the study's best model. Add --watch to print
// the study's leaderboard from the database every 5 seconds instead of running trials. Without --storage the sweep
// is one process with a checkpoint folder, as above.
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Sweep;
using Spectre.Console;

var positional = new List<string>();
string? storage = null, study = "sweep";
bool watch = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--storage" when i + 1 < args.Length: storage = args[++i]; break;
        case "--study" when i + 1 < args.Length: study = args[++i]; break;
        case "--watch": watch = true; break;
        default: positional.Add(args[i]); break;
    }
}
if (watch)
{
    if (storage is null) { AnsiConsole.MarkupLine("[red]--watch needs --storage.[/]"); return 1; }
    return await Watch(storage, study);
}
string dataPath = positional.Count > 0 ? positional[0]
    : Path.Combine(AppContext.BaseDirectory, "data", "sentiment.tsv");
double seconds = positional.Count > 1 ? double.Parse(positional[1], CultureInfo.InvariantCulture) : 180;
if (!File.Exists(dataPath))
{
    AnsiConsole.MarkupLine($"[red]Data file '{Markup.Escape(dataPath)}' does not exist.[/]");
    return 1;
}

var ml = new MLContext(seed: 1);
var data = ml.Data.LoadFromTextFile(dataPath,
    [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
    separatorChar: '\t', hasHeader: true, allowQuoting: false);
var first = ml.Data.TrainTestSplit(data, testFraction: 0.2, seed: 1);
var second = ml.Data.TrainTestSplit(first.TrainSet, testFraction: 0.2, seed: 2);
var (train, validation, test) = (second.TrainSet, second.TestSet, first.TestSet);

Action? refresh = null;
var table = new Table()
    .AddColumns("trial", "method", "parameters", "status", "validation accuracy", "seconds", "best so far");
var sweep = ml.Peft().CreateSweep()
    .SetDataset(train, validation)
    .SetLabel("Label").SetText("Text")
    .SetMetric(PeftMetric.Accuracy)
    .SetSearchSpace(PeftSearchSpace.CreateDefault())
    .SetTuner(PeftTuner.CostFrugal(seed: 1))
    .SetTrainingTimeInSeconds(seconds).SetMaxTrials(12)
    .SetMonitor(e =>
    {
        if (e.Kind != SweepEventKind.TrialEnded || e.Result is not { } r) return;
        bool ensemble = r.Ensemble.Count > 0;
        string parameters = ensemble
            ? string.Join(", ",
                r.Ensemble.Select(m => $"#{m.TrialId} × {m.Weight.ToString("F2", CultureInfo.InvariantCulture)}"))
            : string.Join(", ", r.Parameters.Values.Select(kv =>
                $"{kv.Key}={(kv.Value is double d ? d.ToString("G3", CultureInfo.InvariantCulture) : kv.Value)}"));
        table.AddRow(r.Id.ToString(CultureInfo.InvariantCulture), ensemble ? "ensemble" : r.Parameters.Method,
            Markup.Escape(parameters), r.Status.ToString(),
            double.IsNaN(r.Metric) ? "-" : r.Metric.ToString("F3", CultureInfo.InvariantCulture),
            r.Duration.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture),
            e.BestSoFar is { } b ? $"#{b.Id} {b.Metric:F3}" : "-");
        refresh?.Invoke();
    });

if (storage is null)
    sweep.SetEnsemble(candidates: 3).SetCheckpointFolder(Path.GetFullPath("sweep-checkpoint"));
else
    // A worker of a shared study: the ensemble needs one process's models, so it is off.
    sweep.SetStorage(storage, study);
AnsiConsole.MarkupLine($"[bold]Sweeping[/] for up to {seconds:F0} s (cost-frugal tuner, " +
    (storage is null ? "checkpoint in ./sweep-checkpoint" : $"study '{Markup.Escape(study)}' in the storage") + ")...");
// The leaderboard table redraws as each trial ends (a plain dump of the final table where the output is not a
// terminal).
PeftSweepResult result = null!;
await AnsiConsole.Live(table).StartAsync(async ctx =>
{
    refresh = ctx.Refresh;
    result = await sweep.RunAsync();
});
result.WriteCsv(Path.GetFullPath("sweep-leaderboard.csv"));
SaveChart(result, Path.GetFullPath("sweep-progress.png"));
AnsiConsole.MarkupLine($"Best: {(result.BestTrial.Ensemble.Count > 0 ? "ensemble" : "trial")} {result.BestTrial.Id} " +
    $"({(result.BestTrial.Ensemble.Count > 0
        ? $"{result.BestTrial.Ensemble.Count} models"
        : result.BestTrial.Parameters.Method)}), " +
    $"validation accuracy {result.BestTrial.Metric:F3}; leaderboard in sweep-leaderboard.csv, " +
    "chart in sweep-progress.png");

string modelPath = Path.GetFullPath("sweep-best.zip");
PeftModelIO.SaveAtomic(ml, result.BestModel!, train.Schema, modelPath);
var loaded = new MLContext(seed: 2).Model.Load(modelPath, out _);
var metrics = ml.MulticlassClassification.Evaluate(loaded.Transform(test));
AnsiConsole.MarkupLine($"Reloaded {Path.GetFileName(modelPath)}: test accuracy {metrics.MicroAccuracy:F3} on " +
    $"{test.GetColumn<string>("Label").Count()} held-out rows");
return 0;

// Prints a study's leaderboard from the database every 5 seconds while its workers run (Ctrl+C to stop).
static async Task<int> Watch(string storage, string study)
{
    while (true)
    {
        try
        {
            var board = PeftSweep.LoadStudy(storage, study);
            var table = new Table().AddColumns("trial", "method", "status", "metric", "seconds");
            foreach (var t in board.Leaderboard())
                table.AddRow(t.Id.ToString(CultureInfo.InvariantCulture), t.Parameters.Method, t.Status.ToString(),
                    double.IsNaN(t.Metric) ? "-" : t.Metric.ToString("F3", CultureInfo.InvariantCulture),
                    t.Duration.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture));
            AnsiConsole.Write(table);
            board.WriteCsv(Path.GetFullPath("sweep-leaderboard.csv"));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(e.Message)}[/]"); // no study or no finished trial yet
        }
        await Task.Delay(TimeSpan.FromSeconds(5));
    }
}

// Metric of each finished trial against the time it ended, with the best-so-far line (as AutoML's progress charts).
static void SaveChart(PeftSweepResult result, string path)
{
    var done = result.Trials.Where(t => !double.IsNaN(t.Metric) && !t.FromCheckpoint).ToList();
    if (done.Count == 0) return;
    double elapsed = 0, best = double.NegativeInfinity;
    var xs = new List<double>(); var ys = new List<double>(); var bestYs = new List<double>();
    foreach (var t in done)
    {
        elapsed += t.Duration.TotalSeconds;
        best = Math.Max(best, t.Metric);
        xs.Add(elapsed); ys.Add(t.Metric); bestYs.Add(best);
    }
    var plt = new ScottPlot.Plot();
    var trials = plt.Add.ScatterPoints(xs.ToArray(), ys.ToArray());
    trials.LegendText = "trial";
    trials.MarkerSize = 8;
    var line = plt.Add.ScatterLine(xs.ToArray(), bestYs.ToArray());
    line.LegendText = "best so far";
    line.ConnectStyle = ScottPlot.ConnectStyle.StepHorizontal;
    plt.XLabel("training time (s, cumulative)");
    plt.YLabel("validation " + result.Metric);
    plt.Title("PEFT sweep");
    plt.ShowLegend();
    plt.SavePng(path, 800, 500);
}
