// SweepWorker: one worker of a sweep study, for the storage tests.
//   dotnet SweepWorker.dll --storage <connection string> --study <name> [options]
// Options:
//   --trials <n>           the study's trial budget (default 6)
//   --seconds <s>          the study's time budget (default none)
//   --tuner <random|grid|cost-frugal>  (default random; seed 1)
//   --heartbeat <s>        heartbeat timeout in seconds (default 120)
//   --retry                retry lost trials
//   --sleep-ms <ms>        synthetic trials: sleep this long and score a fixed function of the point (default 300)
//   --data <folder>        real trials instead: train.tsv and validation.tsv (Label<TAB>Text) there, one epoch of
//                          LoRA each on the ONNX encoder --onnx <file> with its --vocab <file>
//   --wait-for <file>      print READY, then wait until the file exists before joining the study
// Prints "START <n>" and "END <n> <status>" as trials start and end (stdout is flushed per line, so a test can kill the
// process mid-trial), then "BEST <n> <metric>" and exits 0.
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Sweep;

var options = new Dictionary<string, string>();
for (int i = 0; i < args.Length; i++)
{
    if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected '{args[i]}'");
    bool flag = i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal);
    options[args[i][2..]] = flag ? "true" : args[++i];
}
string Get(string key, string fallback) => options.TryGetValue(key, out var v) ? v : fallback;
double Number(string key, double fallback) => double.Parse(Get(key, fallback.ToString(CultureInfo.InvariantCulture)),
    CultureInfo.InvariantCulture);

var ml = new MLContext(1);
var tuner = Get("tuner", "random") switch
{
    "grid" => PeftTuner.Grid(),
    "cost-frugal" => PeftTuner.CostFrugal(1),
    _ => PeftTuner.Random(1),
};
var sweep = ml.Peft().CreateSweep()
    .SetStorage(Get("storage", ""), Get("study", "default"), TimeSpan.FromSeconds(Number("heartbeat", 120)),
        retryLostTrials: options.ContainsKey("retry"))
    .SetTuner(tuner).SetMaxTrials((int)Number("trials", 6))
    .SetMonitor(e => Console.WriteLine(e.Kind == SweepEventKind.TrialStarted
        ? $"START {e.TrialId}" : $"END {e.TrialId} {e.Result!.Status}"));
if (options.ContainsKey("seconds")) sweep.SetTrainingTimeInSeconds(Number("seconds", 0));

if (options.TryGetValue("data", out var folder))
{
    IDataView Load(string file) => ml.Data.LoadFromTextFile(Path.Combine(folder, file),
        [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
        separatorChar: '\t', hasHeader: true, allowQuoting: false);
    sweep.SetDataset(Load("train.tsv"), Load("validation.tsv")).SetLabel("Label").SetText("Text")
        .SetBaseModel(BaseModel.FromOnnx(Get("onnx", ""), Get("vocab", ""),
            cacheDirectory: Path.Combine(folder, $"cache-{Environment.ProcessId}")))
        .SetSearchSpace(new PeftSearchSpace()
            .SetShared(new RangeParameter("LearningRate", 5e-3, 2e-2, logScale: true))
            .SetShared(new ChoiceParameter("Epochs", 1))
            .SetShared(new ChoiceParameter("BatchSize", 16))
            .SetShared(new ChoiceParameter("MaxSequenceLength", 16))
            .AddMethod("lora", new ChoiceParameter("Rank", 4, 8)));
}
else
{
    int sleep = (int)Number("sleep-ms", 300);
    sweep.SetSearchSpace(Synthetic.Space()).SetTrialEvaluation((p, ct) =>
    {
        Task.Delay(sleep, ct).GetAwaiter().GetResult();
        return new TrialOutcome(Synthetic.Score(p));
    });
}

if (options.TryGetValue("wait-for", out var signal))
{
    Console.WriteLine("READY");
    while (!File.Exists(signal)) await Task.Delay(20);
}
var result = await sweep.RunAsync();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"BEST {result.BestTrial.Id} {result.BestTrial.Metric:R}"));
return 0;

/// <summary>The synthetic study the storage tests also score in-process: a known function of the point.</summary>
internal static class Synthetic
{
    public static PeftSearchSpace Space() => new PeftSearchSpace()
        .SetShared(new RangeParameter("LearningRate", 1e-4, 1e-2, defaultValue: 2e-3, logScale: true))
        .AddMethod("lora", new ChoiceParameter("Rank", 4, 8, 16, 32).WithDefault(8));

    /// <summary>Peaks at learning rate 1e-3, rank 16.</summary>
    public static double Score(TrialParameters p) =>
        1 - Math.Abs(Math.Log10(Convert.ToDouble(p.Values["LearningRate"], CultureInfo.InvariantCulture)) + 3) / 10
        - Math.Abs(Convert.ToInt32(p.Values["Rank"], CultureInfo.InvariantCulture) - 16) / 100.0;
}
