// Sweep: an AutoML-style search over PEFT methods and hyper-parameters on the embedded MiniLM.
//   dotnet run -c Release --project examples/Sweep [-- data.tsv [seconds]]   (TSV with a header: Label<TAB>Text)
// Runs the cost-frugal tuner for a few minutes, prints the leaderboard as trials finish, averages the best three models
// when that validates better, saves the best model, reloads it and scores the held-out test rows.
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Sweep;
using Spectre.Console;

string dataPath = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "data", "sentiment.tsv");
double seconds = args.Length > 1 ? double.Parse(args[1], CultureInfo.InvariantCulture) : 180;
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
    .SetEnsemble(candidates: 3)
    .SetCheckpointFolder(Path.GetFullPath("sweep-checkpoint"))
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

AnsiConsole.MarkupLine($"[bold]Sweeping[/] for up to {seconds:F0} s (cost-frugal tuner, checkpoint in " +
    "./sweep-checkpoint)...");
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
