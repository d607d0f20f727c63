// DeployOnnx: export a trained PEFT stage as one ONNX file and score that file without the library's TorchSharp path.
//   dotnet run -c Release --project examples/DeployOnnx [-- model.zip [data.tsv]]
// Without arguments it trains a small LoRA sentiment classifier (the QuickStart's data, 60 steps, 64 tokens); with a
// zip it loads that model instead (a single-text classification stage). Either way it exports the stage with
// ExportOnnx, then scores the exported model two ways:
//   (a) ML.NET: tokenize (CustomMapping) -> ApplyOnnxModel -> predicted index back to its label (CustomMapping);
//   (b) a bare ONNX Runtime InferenceSession on one padded batch;
// checks that both agree with the stage's own Score column (max abs difference <= 1e-4, same predicted labels; exit
// code 1 otherwise), and times the stage with ScoringEngine TorchSharp against ScoringEngine OnnxRuntime.
// Everything the scorers need besides the graph (the tokenizer's vocabulary, the labels, the maximum length) is read
// from the ONNX file's metadata (peft.* keys), so (a) and (b) would run as they are in a process that has only the
// .onnx file.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

const double Tolerance = 1e-4;
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

string? zipPath = args.Length > 0 && args[0].EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? args[0] : null;
string dataPath = args.Length > (zipPath is null ? 0 : 1) ? args[zipPath is null ? 0 : 1]
    : Path.Combine(AppContext.BaseDirectory, "data", "sentiment.tsv");
foreach (var path in new[] { zipPath, dataPath })
{
    if (path is not null && !File.Exists(path))
    {
        Console.Error.WriteLine($"'{path}' does not exist. Usage: DeployOnnx [model.zip] [data.tsv] " +
            "(TSV with a header row and columns Label<TAB>Text).");
        return 2;
    }
}

var ml = new MLContext(seed: 1);
var data = ml.Data.LoadFromTextFile(dataPath,
    [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
    separatorChar: '\t', hasHeader: true, allowQuoting: false);
var split = ml.Data.TrainTestSplit(data, testFraction: 0.2, seed: 1);

// ---- 1. The stage: trained here, or loaded from the zip.
PeftTextTransformer stage;
var clock = Stopwatch.StartNew();
if (zipPath is null)
{
    // Short: 60 steps (3 epochs of 16 rows at 5e-3) instead of the default plan's ~300; one epoch left it at
    // chance here. Float32, so that the stage's own TorchSharp scores are the float32 reference the ONNX file
    // (always float32) is compared with; on a CPU with native bf16 the default (Auto) would score the stage in bf16.
    var options = new PeftTextClassificationOptions
    {
        LabelColumnName = "Label", Sentence1ColumnName = "Text", MaxSequenceLength = 64, Epochs = 3, BatchSize = 16,
        LearningRate = 5e-3, Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp,
    };
    var chain = ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(ml.Peft().LoraTextClassification(options))
        .Fit(split.TrainSet);
    stage = chain.LastTransformer;
    Console.WriteLine($"Trained LoRA on {dataPath} in {clock.Elapsed.TotalSeconds:F1} s: " +
        $"{stage.TrainingReport?.Plan}");
    string savedPath = Path.Combine(AppContext.BaseDirectory, "sentiment.zip");
    ml.Model.Save(chain, split.TrainSet.Schema, savedPath);
    Console.WriteLine($"Saved {savedPath}; `dotnet run -c Release --project examples/DeployOnnx -- {savedPath}` " +
        "exports it again without training.");
}
else
{
    var loaded = ml.Model.Load(zipPath, out _);
    var stages = loaded is IEnumerable<ITransformer> many ? many.OfType<PeftTextTransformer>().ToList()
        : loaded is PeftTextTransformer one ? [one] : [];
    if (stages.Count != 1 || stages[0].Task != PeftTask.Classification || stages[0].InputColumnNames.Count != 1)
    {
        Console.Error.WriteLine($"{zipPath}: expected one single-text classification PeftTextTransformer, found " +
            $"{stages.Count} stage(s){(stages.Count == 1 ? $" ({stages[0].Task}, {stages[0].InputColumnNames.Count}" +
                " text column(s))" : "")}.");
        return 2;
    }
    stage = stages[0];
    Console.WriteLine($"Loaded {zipPath} in {clock.Elapsed.TotalSeconds:F1} s.");
}
// The rows every engine scores: the held-out 20%, under the column name the stage reads.
string textColumn = stage.InputColumnNames[0];
var rows = textColumn == "Text" ? split.TestSet
    : ml.Transforms.CopyColumns(textColumn, "Text").Fit(split.TestSet).Transform(split.TestSet);
var texts = split.TestSet.GetColumn<string>("Text").ToList();
Console.WriteLine($"Stage: {stage.Method.MethodName} on {stage.BaseModelIdentity.Name}, scores in " +
    $"{stage.ScoringPrecision}; {texts.Count} held-out rows to score.");

// ---- 2. Export.
// Next to the zip, or (~90 MB: the whole encoder) in the build output rather than the working folder.
string onnxPath = Path.GetFullPath(zipPath is null ? Path.Combine(AppContext.BaseDirectory, "sentiment.onnx")
    : Path.ChangeExtension(zipPath, ".onnx"));
clock.Restart();
try
{
    stage.ExportOnnx(onnxPath);
}
catch (NotSupportedException e)
{
    Console.Error.WriteLine($"This stage cannot be exported: {e.Message}");
    return 2;
}
Console.WriteLine($"Exported {onnxPath} ({new FileInfo(onnxPath).Length / 1e6:F1} MB) in " +
    $"{clock.Elapsed.TotalSeconds:F1} s.");

// ---- 3. What a deployment reads back from the file: outputs, labels, maximum length and the tokenizer.
using var session = new InferenceSession(onnxPath);
var meta = session.ModelMetadata.CustomMetadataMap;
string scoreName = session.OutputMetadata.Single(o => o.Value.ElementType == typeof(float)).Key;
string predictedName = session.OutputMetadata.Single(o => o.Value.ElementType == typeof(long)).Key;
string[] labels = JsonSerializer.Deserialize<string[]>(meta["peft.labels"])!;
int maxLength = int.Parse(meta["peft.max_sequence_length"], CultureInfo.InvariantCulture);
const string filePrefix = "peft.tokenizer.file.";
var tokenizer = TextTokenizer.Load(
    meta.Where(kv => kv.Key.StartsWith(filePrefix, StringComparison.Ordinal))
        .ToDictionary(kv => kv.Key[filePrefix.Length..], kv => Convert.FromBase64String(kv.Value)),
    Enum.Parse<TextTokenizerKind>(meta["peft.tokenizer.kind"]));
Console.WriteLine($"ONNX metadata: method {meta["peft.method"]}, task {meta["peft.task"]}, labels " +
    $"[{string.Join(", ", labels)}], max length {maxLength}, {tokenizer.Kind} tokenizer; outputs " +
    $"{scoreName}, {predictedName}.");

// ---- 4. The reference: the stage's own Score column, from TorchSharp when the stage scores in float32 (an
// independent implementation of the same model); a bf16 stage's TorchSharp scores would differ by bf16 rounding, so
// it is compared through its OnnxRuntime engine instead.
stage.ScoringEngine = stage.ScoringPrecision == "Float32" ? ScoringEngine.TorchSharp : ScoringEngine.OnnxRuntime;
var reference = StageScores(stage, rows, scoreName);
Console.WriteLine($"Reference: the stage's {scoreName} column, ScoringEngine {stage.ActiveScoringEngine}.");

// ---- 5a. ML.NET: tokenize -> ApplyOnnxModel -> label. ApplyOnnxModel scores row by row on fixed shapes, so every row
// is padded to maxLength (attention mask 0 on padding, which changes no score) and the shapes are given as [1, L].
var tokenSchema = SchemaDefinition.Create(typeof(TokenRow));
foreach (var column in tokenSchema) column.ColumnType = new VectorDataViewType(NumberDataViewType.Int64, maxLength);
var indexSchema = SchemaDefinition.Create(typeof(IndexRow));
indexSchema[nameof(IndexRow.PredictedLabel)].ColumnName = predictedName;
indexSchema[nameof(IndexRow.PredictedLabel)].ColumnType = new VectorDataViewType(NumberDataViewType.Int64, 1);
var shapes = new Dictionary<string, int[]>
{
    ["input_ids"] = [1, maxLength], ["attention_mask"] = [1, maxLength], ["token_type_ids"] = [1, maxLength],
    [scoreName] = [1, labels.Length], [predictedName] = [1],
};
var deployment = ml.Transforms.CustomMapping<TextRow, TokenRow>(
        (row, tokens) => Tokenize(tokenizer, row.Text, maxLength, tokens), contractName: null,
        outputSchemaDefinition: tokenSchema)
    .Append(ml.Transforms.ApplyOnnxModel([scoreName, predictedName],
        ["input_ids", "attention_mask", "token_type_ids"], onnxPath, shapes, recursionLimit: 100))
    .Append(ml.Transforms.CustomMapping<IndexRow, LabelRow>(
        (index, label) => label.PredictedText = labels[index.PredictedLabel[0]], contractName: null,
        inputSchemaDefinition: indexSchema));
var scoredByMlNet = deployment.Fit(split.TestSet).Transform(split.TestSet);
var mlNetScores = ReadScores(scoredByMlNet, scoreName);
var mlNetLabels = scoredByMlNet.GetColumn<string>(nameof(LabelRow.PredictedText)).ToList();

// ---- 5b. A bare InferenceSession on one padded batch (rows padded to the longest, not to maxLength).
var batch = tokenizer.EncodeBatch(texts.Select(t => (string?)t).ToList(), null, maxLength);
long[] shape = [batch.BatchSize, batch.SequenceLength];
using var ids = OrtValue.CreateTensorValueFromMemory(batch.InputIds, shape);
using var mask = OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, shape);
using var types = OrtValue.CreateTensorValueFromMemory(batch.TokenTypeIds, shape);
using var runOptions = new RunOptions();
using var outputs = session.Run(runOptions, ["input_ids", "attention_mask", "token_type_ids"], [ids, mask, types],
    [scoreName, predictedName]);
var flat = outputs[0].GetTensorDataAsSpan<float>().ToArray();
var ortScores = Enumerable.Range(0, texts.Count).Select(r => flat[(r * labels.Length)..((r + 1) * labels.Length)])
    .ToList();
var ortLabels = outputs[1].GetTensorDataAsSpan<long>().ToArray().Select(i => labels[i]).ToList();

// ---- 6. Compare.
var stageLabels = reference.Select(s => labels[Array.IndexOf(s, s.Max())]).ToList();
var truth = split.TestSet.GetColumn<string>("Label").ToList();
Console.WriteLine($"The stage's held-out accuracy: {stageLabels.Zip(truth).Count(p => p.First == p.Second)} of " +
    $"{truth.Count} rows.");
string Vector(float[] v) => "[" + string.Join(", ", v.Select(x => x.ToString("F5", CultureInfo.InvariantCulture)))
    + "]";
Console.WriteLine();
Console.WriteLine($"{scoreName} (probabilities of {string.Join(", ", labels)}) of the first rows; the differences " +
    $"below are over all {texts.Count}:");
Console.WriteLine();
Console.WriteLine($"| row | {"stage",-20} | {"ML.NET ApplyOnnxModel",-20} | {"ONNX Runtime",-20} | predicted | text");
Console.WriteLine($"|----:|{new string('-', 22)}|{new string('-', 23)}|{new string('-', 22)}|----------:|-----");
for (int r = 0; r < Math.Min(8, texts.Count); r++)
{
    string text = texts[r].Length > 48 ? texts[r][..45] + "..." : texts[r];
    Console.WriteLine($"| {r,3} | {Vector(reference[r]),-20} | {Vector(mlNetScores[r]),-21} | " +
        $"{Vector(ortScores[r]),-20} | {stageLabels[r],9} | {text}");
}
double mlNetDiff = MaxAbsDiff(reference, mlNetScores), ortDiff = MaxAbsDiff(reference, ortScores);
int mlNetMismatch = stageLabels.Zip(mlNetLabels).Count(p => p.First != p.Second);
int ortMismatch = stageLabels.Zip(ortLabels).Count(p => p.First != p.Second);
Console.WriteLine();
Console.WriteLine($"max |stage - ML.NET ApplyOnnxModel| = {mlNetDiff:0.00E+0}; predicted labels differ on " +
    $"{mlNetMismatch} of {texts.Count} rows (each row padded to {maxLength} tokens)");
Console.WriteLine($"max |stage - bare ONNX Runtime|     = {ortDiff:0.00E+0}; predicted labels differ on " +
    $"{ortMismatch} of {texts.Count} rows (one batch, padded to {batch.SequenceLength} tokens)");
bool agree = mlNetDiff <= Tolerance && ortDiff <= Tolerance && mlNetMismatch == 0 && ortMismatch == 0;
Console.WriteLine(agree ? $"OK: both agree with the stage within {Tolerance:0E+0}."
    : $"FAILED: a difference above {Tolerance:0E+0} or a different predicted label.");

// ---- 7. The stage's two engines on the same rows: Transform with every row's Score read, medians of timed runs.
Console.WriteLine();
const int warmUp = 1, timed = 9;
var engines = new[] { ScoringEngine.TorchSharp, ScoringEngine.OnnxRuntime };
var medians = new Dictionary<ScoringEngine, double>();
var runs = engines.ToDictionary(e => e, _ => new List<double>());
if (stage.ScoringPrecision != "Float32")
    Console.WriteLine($"Note: the stage scores in {stage.ScoringPrecision} with TorchSharp, in float32 with ONNX " +
        "Runtime.");
for (int i = 0; i < warmUp + timed; i++)
{
    // Alternating, so that a change in the machine's load touches both engines alike.
    foreach (var engine in engines)
    {
        stage.ScoringEngine = engine;
        var watch = Stopwatch.StartNew();
        StageScores(stage, rows, scoreName);
        if (i >= warmUp) runs[engine].Add(watch.Elapsed.TotalMilliseconds);
    }
}
foreach (var engine in engines)
{
    var ms = runs[engine].Order().ToList();
    medians[engine] = ms[ms.Count / 2];
    Console.WriteLine($"stage, ScoringEngine {engine,-11}: median {medians[engine],7:F1} ms for {texts.Count} rows " +
        $"({texts.Count / (medians[engine] / 1000),6:F0} rows/s; runs " +
        $"{string.Join(", ", ms.Select(m => m.ToString("F0", CultureInfo.InvariantCulture)))} ms)");
}
double load = File.Exists("/proc/loadavg")
    ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture) : double.NaN;
Console.WriteLine($"OnnxRuntime / TorchSharp throughput: " +
    $"{medians[ScoringEngine.TorchSharp] / medians[ScoringEngine.OnnxRuntime]:F2}x ({warmUp} warm-up + {timed} timed " +
    $"runs each, {Environment.ProcessorCount} logical CPUs, both engines at their default threads; 1-minute load " +
    $"average now {load:F2}: other processes on the machine make these figures noisy).");
return agree ? 0 : 1;

// The stage's Score column, one array per row, read through a cursor (what scoring costs in use).
static List<float[]> StageScores(PeftTextTransformer stage, IDataView rows, string scoreName) =>
    ReadScores(stage.Transform(rows), scoreName);

static List<float[]> ReadScores(IDataView scored, string scoreName)
{
    var column = scored.Schema[scoreName];
    var result = new List<float[]>();
    using var cursor = scored.GetRowCursor([column]);
    var getter = cursor.GetGetter<VBuffer<float>>(column);
    VBuffer<float> score = default;
    while (cursor.MoveNext())
    {
        getter(ref score);
        result.Add(score.DenseValues().ToArray());
    }
    return result;
}

static double MaxAbsDiff(List<float[]> a, List<float[]> b)
{
    if (a.Count != b.Count) return double.PositiveInfinity;
    double max = 0;
    for (int r = 0; r < a.Count; r++)
    {
        if (a[r].Length != b[r].Length) return double.PositiveInfinity;
        for (int i = 0; i < a[r].Length; i++)
        {
            double d = Math.Abs(a[r][i] - b[r][i]);
            if (!(d <= max)) max = double.IsNaN(d) ? double.PositiveInfinity : d;
        }
    }
    return max;
}

// One row as the exported graph wants it: CLS text SEP, truncated to maxLength, padded to exactly maxLength.
static void Tokenize(TextTokenizer tokenizer, string text, int maxLength, TokenRow tokens)
{
    var encoded = tokenizer.EncodeSingle(text, maxLength);
    tokens.input_ids = new long[maxLength];
    tokens.attention_mask = new long[maxLength];
    tokens.token_type_ids = new long[maxLength];
    Array.Fill(tokens.input_ids, tokenizer.PadTokenId);
    for (int i = 0; i < encoded.Length; i++)
    {
        tokens.input_ids[i] = encoded.InputIds[i];
        tokens.attention_mask[i] = 1;
        tokens.token_type_ids[i] = encoded.TokenTypeIds[i];
    }
}

/// <summary>The text column the deployment pipeline reads.</summary>
internal sealed class TextRow
{
    public string Text { get; set; } = "";
}

/// <summary>The ONNX inputs, named as the graph names them; sized to the maximum length at run time.</summary>
#pragma warning disable IDE1006 // the members are named as the ONNX graph's inputs
internal sealed class TokenRow
{
    public long[] input_ids { get; set; } = [];
    public long[] attention_mask { get; set; } = [];
    public long[] token_type_ids { get; set; } = [];
}
#pragma warning restore IDE1006

/// <summary>The ONNX PredictedLabel output: one 0-based class index.</summary>
internal sealed class IndexRow
{
    public long[] PredictedLabel { get; set; } = [];
}

/// <summary>The predicted label, as the training label's value.</summary>
internal sealed class LabelRow
{
    public string PredictedText { get; set; } = "";
}
