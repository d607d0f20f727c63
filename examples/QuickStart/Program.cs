// QuickStart: LoRA fine-tuning of the embedded all-MiniLM-L6-v2 as one ML.NET pipeline stage.
//   dotnet run --project examples/QuickStart [-- path/to/data.tsv]   (TSV with a header: Label<TAB>Text)
// Trains on 80% of the rows, compares with ML.NET's classic FeaturizeText + SdcaMaximumEntropy on the same split,
// saves the model zip, reloads it in a fresh MLContext and predicts a few sentences.
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.MLNet;
using Spectre.Console;

string dataPath = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "data", "sentiment.tsv");
if (!File.Exists(dataPath))
{
    AnsiConsole.MarkupLineInterpolated(
        $"[red]Data file '{dataPath}' does not exist.[/] Give a TSV with a header row and columns Label<TAB>Text.");
    return 1;
}
string modelPath = Path.GetFullPath("sentiment.zip");

var ml = new MLContext(seed: 1);
var data = ml.Data.LoadFromTextFile(dataPath,
    [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
    separatorChar: '\t', hasHeader: true, allowQuoting: false);
var split = ml.Data.TrainTestSplit(data, testFraction: 0.2, seed: 1);
long trainRows = split.TrainSet.GetColumn<string>("Label").LongCount(),
    testRows = split.TestSet.GetColumn<string>("Label").LongCount();
AnsiConsole.MarkupLineInterpolated($"[bold]Data[/]: {dataPath} — {trainRows} training rows, {testRows} test rows");

// 1. ML.NET's classic bag-of-words baseline.
var clock = Stopwatch.StartNew();
var baseline = ml.Transforms.Conversion.MapValueToKey("Label")
    .Append(ml.Transforms.Text.FeaturizeText("Features", "Text"))
    .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy())
    .Fit(split.TrainSet);
var baselineMetrics = ml.MulticlassClassification.Evaluate(baseline.Transform(split.TestSet));
var baselineTime = clock.Elapsed;

// 2. LoRA on the embedded MiniLM: one pipeline stage.
// Defaults throughout: the stage picks batch size and epochs from the row count (enough optimizer steps for a few
// hundred rows), holds out a stratified share to keep the best epoch, and logs its plan.
var options = new PeftTextClassificationOptions { LabelColumnName = "Label", Sentence1ColumnName = "Text" };
ITransformer model = null!;
clock.Restart();
AnsiConsole.Progress()
    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
    .Start(ctx =>
    {
        var task = ctx.AddTask("LoRA fine-tuning", maxValue: 1.0);
        options.Progress = p =>
        {
            task.Value = (double)p.Step / p.TotalSteps;
            task.Description = $"epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s";
        };
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().LoraTextClassification(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        model = pipeline.Fit(split.TrainSet);
        task.Value = 1.0;
    });
var loraTime = clock.Elapsed;
var metrics = ml.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
var stage = ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single();
AnsiConsole.MarkupLineInterpolated($"[bold]Training plan[/]: {stage.TrainingReport?.Plan}");

var table = new Table()
    .AddColumns("model", "accuracy", "macro accuracy", "log-loss", "trainable parameters", "training time");
table.AddRow("FeaturizeText + SdcaMaximumEntropy", $"{baselineMetrics.MicroAccuracy:F3}",
    $"{baselineMetrics.MacroAccuracy:F3}", $"{baselineMetrics.LogLoss:F3}", "-", $"{baselineTime.TotalSeconds:F1} s");
table.AddRow($"LoRA r=8 on {stage.BaseModelIdentity.Name}", $"{metrics.MicroAccuracy:F3}",
    $"{metrics.MacroAccuracy:F3}", $"{metrics.LogLoss:F3}",
    $"{stage.TrainableParameterCount:N0} of {stage.TotalParameterCount:N0} ({stage.TrainablePercent:F2}%)",
        $"{loraTime.TotalSeconds:F1} s");
AnsiConsole.Write(table);

// 3. Save atomically, reload in a fresh context, predict.
PeftModelIO.SaveAtomic(ml, model, split.TrainSet.Schema, modelPath);
AnsiConsole.MarkupLineInterpolated($"Saved [bold]{modelPath}[/] ({new FileInfo(modelPath).Length
    / 1024.0:F0} KB: LoRA and head weights, vocabulary and the base model's identity)");
var fresh = new MLContext(seed: 2);
var loaded = fresh.Model.Load(modelPath, out _);
var engine = fresh.Model.CreatePredictionEngine<Review, Prediction>(loaded);
foreach (var text in new[]
{
    "I expected to hate it, but it won me over completely.",
    "The trailer was great; the film was not.",
    "Not bad at all for the price.",
    "The staff never once made us feel welcome.",
})
{
    var p = engine.Predict(new Review { Text = text });
    string verdict = p.PredictedLabel == "1" ? "[green]positive[/]" : "[red]negative[/]";
    AnsiConsole.MarkupLine($"  {verdict} ({p.Score.Max():P0})  {Markup.Escape(text)}");
}
return 0;

/// <summary>An input row for the prediction engine.</summary>
internal sealed class Review
{
    public string Label { get; set; } = "";
    public string Text { get; set; } = "";
}

/// <summary>The columns read back from the pipeline.</summary>
internal sealed class Prediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}
