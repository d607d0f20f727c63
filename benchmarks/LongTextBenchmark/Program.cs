// LongTextBenchmark: Truncate vs HeadAndTail vs SlidingWindow (at their defaults) on long documents built from real
// sentences, with the embedded MiniLM and LoRA at the stage's defaults otherwise.
//
// Documents: random sentences of the data set (of either label, so they carry no net sign of the document's label)
// are joined until the document has at least --doc-tokens tokens, then --end-sentences sentences of one label end it
// (a closing verdict, as reviews often have); that label is the document's. Training documents come from train.tsv,
// test documents from dev.tsv (sentences reused across documents). Truncation sees only filler; the other
// strategies can reach the end.
//
// Usage: LongTextBenchmark [--data <folder>] [--train-docs n] [--test-docs n] [--doc-tokens n] [--max-length n]
//                          [--epochs n] [--threads n] [--strategies truncate,headandtail,slidingwindow] [--seed n]
//                          [--end-sentences n]
// Defaults: shared/data/uci_sentiment found by walking up, 400 / 200 documents, 1,000 tokens, window 128, 2 epochs,
// libtorch's threads, all three strategies, seed 1, 1 closing sentence.
using Microsoft.ML.Peft.Runtime;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Benchmarks;
using Microsoft.ML.Peft.MLNet;

var c = CultureInfo.InvariantCulture;
var opt = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 0; i + 1 < args.Length; i += 2)
{
    if (!args[i].StartsWith("--", StringComparison.Ordinal))
    {
        Console.Error.WriteLine($"Unexpected argument '{args[i]}'.");
        return 2;
    }
    opt[args[i][2..]] = args[i + 1];
}
int Int(string key, int fallback) => opt.TryGetValue(key, out var v) ? int.Parse(v, c) : fallback;
string? dataDir = opt.GetValueOrDefault("data") ?? DataLocator.Find("uci_sentiment");
if (dataDir is null || !File.Exists(Path.Combine(dataDir, "dev.tsv")))
{
    Console.WriteLine("Data not found: pass --data <folder holding train.tsv and dev.tsv> (Label<TAB>Text).");
    return 2;
}
int trainDocs = Int("train-docs", 400), testDocs = Int("test-docs", 200), docTokens = Int("doc-tokens", 1000);
int maxLength = Int("max-length", 128), epochs = Int("epochs", 2), seed = Int("seed", 1);
int endSentences = Int("end-sentences", 1);
int? threads = opt.ContainsKey("threads") ? Int("threads", 1) : null;
var strategies = (opt.GetValueOrDefault("strategies") ?? "truncate,headandtail,slidingwindow")
    .Split(',', StringSplitOptions.RemoveEmptyEntries)
    .Select(s => Enum.Parse<LongTextStrategy>(s, ignoreCase: true)).ToArray();

var baseModel = BaseModel.MiniLM();
var tokenizer = baseModel.CreateTokenizer();
var train = Documents(Read(Path.Combine(dataDir, "train.tsv")), trainDocs, seed);
var test = Documents(Read(Path.Combine(dataDir, "dev.tsv")), testDocs, seed + 1);

Console.WriteLine("# Long documents: Truncate vs HeadAndTail vs SlidingWindow");
Console.WriteLine();
Console.WriteLine($"- CPU: {CpuInfo.Name()} ({Environment.ProcessorCount} logical cores; " +
    $"flags {CpuInfo.RelevantFlags()})");
Console.WriteLine($"- load average at start: {LoadAverage()}");
Console.WriteLine($"- data: {dataDir}; {trainDocs} training documents from train.tsv, {testDocs} test documents from " +
    $"dev.tsv: ≥ {docTokens} tokens of filler, then {endSentences} closing sentence(s) of one label, the " +
    $"document's (mean length {train.Average(d => d.Tokens):F0} / {test.Average(d => d.Tokens):F0} tokens)");
Console.WriteLine($"- stage: MiniLM, LoRA defaults, MaxSequenceLength {maxLength}, {epochs} epoch(s), no validation, " +
    $"threads {threads?.ToString(c) ?? "libtorch default"}, seed {seed}");
Console.WriteLine();
Console.WriteLine("| strategy | test accuracy | optimizer steps per epoch | training s | scoring s | memory budget: " +
    "rows per pass × passes | peak RSS |");
Console.WriteLine("|:--|--:|--:|--:|--:|:--|--:|");
foreach (var strategy in strategies)
{
    var ml = new MLContext(seed);
    var options = new PeftTextClassificationOptions
    {
        Sentence1ColumnName = "Text", MaxSequenceLength = maxLength, Epochs = epochs, ValidationFraction = 0,
        LongTextStrategy = strategy, NumberOfThreads = threads, BaseModel = baseModel,
    };
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(options));
    // The strategies share this process: reset the kernel's peak so that each one's own can be read (Linux).
    ProcessMemory.TryResetPeak();
    var clock = Stopwatch.StartNew();
    var model = pipeline.Fit(ml.Data.LoadFromEnumerable(train.Select(d => d.Row)));
    double trainSeconds = clock.Elapsed.TotalSeconds;
    clock.Restart();
    var metrics = ml.MulticlassClassification.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(
        test.Select(d => d.Row))));
    double scoreSeconds = clock.Elapsed.TotalSeconds;
    var report = model.LastTransformer.TrainingReport!;
    // SlidingWindow trains on every window: its steps per epoch show what it costs over one window per document.
    string memory = report.Memory is { } m ? $"{m.RowsPerPass} × {m.AccumulationSteps}"
        + (m.FusedAttention ? ", fused attention" : "") + (m.GradientCheckpointing ? ", checkpointing" : "") : "off";
    Console.WriteLine($"| {strategy} | {metrics.MicroAccuracy:F3} | {report.Plan!.StepsPerEpoch} | {trainSeconds:F0} " +
        $"| {scoreSeconds:F0} | {memory} | {(ProcessMemory.PeakSinceReset() ?? 0) >> 20} MiB |");
    model.LastTransformer.Dispose();
}
Console.WriteLine();
Console.WriteLine($"- load average at end: {LoadAverage()}");
return 0;

static string LoadAverage() => File.Exists("/proc/loadavg")
    ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3))
    : "n/a";

static List<(string Label, string Text)> Read(string path) =>
    File.ReadLines(path).Skip(1).Select(l => l.Split('\t')).Where(f => f.Length >= 2)
        .Select(f => (f[0], f[1])).ToList();

List<(Row Row, int Tokens)> Documents(List<(string Label, string Text)> sentences, int count, int docSeed)
{
    var rng = new Random(docSeed);
    var tokens = sentences.Select(s => tokenizer.EncodeWithoutSpecialTokens(s.Text).Count).ToArray();
    var result = new List<(Row, int)>(count);
    for (int d = 0; d < count; d++)
    {
        var parts = new List<string>();
        int total = 0;
        while (total < docTokens)
        {
            int k = rng.Next(sentences.Count);
            parts.Add(sentences[k].Text);
            total += tokens[k];
        }
        string label = sentences[rng.Next(sentences.Count)].Label;
        for (int added = 0; added < endSentences;)
        {
            int k = rng.Next(sentences.Count);
            if (sentences[k].Label != label) continue;
            parts.Add(sentences[k].Text);
            total += tokens[k];
            added++;
        }
        result.Add((new Row { Label = label, Text = string.Join(" ", parts) }, total));
    }
    return result;
}

internal sealed class Row
{
    public string Label { get; set; } = "";
    public string Text { get; set; } = "";
}
