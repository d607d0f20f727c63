// HuggingFaceInterop: train the QuickStart LoRA model small, save it as a Hugging Face peft adapter and as a merged
// transformers model, import both back and check that they score as the trained stage does.
//   dotnet run --project examples/HuggingFaceInterop [-- output-folder]
// The adapter folder loads in Python with
//   PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(
//       "sentence-transformers/all-MiniLM-L6-v2", num_labels=2), folder)
// and the merged folder with AutoModelForSequenceClassification.from_pretrained(folder). See docs/huggingface.md.
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;

string output = Path.GetFullPath(args.Length > 0 ? args[0] : "hf-export");
string dataPath = Path.Combine(AppContext.BaseDirectory, "data", "sentiment.tsv");

var ml = new MLContext(seed: 1);
var data = ml.Data.LoadFromTextFile(dataPath,
    [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
    separatorChar: '\t', hasHeader: true, allowQuoting: false);
// Small on purpose: 160 rows, one epoch. The point is the round trip, not the accuracy.
var train = ml.Data.TakeRows(data, 160);
var test = ml.Data.SkipRows(data, 360);
var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train);

var stage = ml.Peft().TextClassification(new PeftTextClassificationOptions
{
    LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 1, MaxSequenceLength = 64,
    Method = new LoraConfig { Rank = 8, Alpha = 16 },
    // float32 everywhere, so that "scores match" means within 1e-5 (bf16 scoring would round both sides alike, but
    // the merged export is float32).
    Precision = Microsoft.ML.Peft.Training.PeftPrecision.Float32,
}).Fit(keyed.Transform(train));
Console.WriteLine($"Trained {stage.Method.MethodName} on {stage.BaseModelIdentity.Name}: "
    + $"{stage.TrainableParameterCount:N0} trainable parameters.");

// 1. The peft adapter: adapter_config.json + adapter_model.safetensors (+ config.json and the tokenizer).
string adapterFolder = Path.Combine(output, "adapter");
stage.SavePretrained(adapterFolder);
List(adapterFolder);
// The base is named in adapter_config.json (sentence-transformers/all-MiniLM-L6-v2), embedded in this library.
using var fromAdapter = ml.Peft().FromPretrained(adapterFolder, null,
    Options());
Compare("peft adapter", stage, fromAdapter);

// 2. The merged model (peft's merge_and_unload): a plain BertForSequenceClassification folder.
string mergedFolder = Path.Combine(output, "merged");
stage.SaveMergedPretrained(mergedFolder);
List(mergedFolder);
using var fromMerged = ml.Peft().FromPretrained(mergedFolder, null,
    Options());
Compare("merged transformers model", stage, fromMerged);
stage.Dispose();
return 0;

PeftPretrainedOptions Options() => new()
{
    Sentence1ColumnName = "Text", MaxSequenceLength = 64, Precision = Microsoft.ML.Peft.Training.PeftPrecision.Float32,
};

void List(string folder)
{
    Console.WriteLine($"{folder}:");
    foreach (var file in new DirectoryInfo(folder).GetFiles().OrderBy(f => f.Name, StringComparer.Ordinal))
        Console.WriteLine($"  {file.Name,-28} {file.Length,10:N0} bytes");
}

void Compare(string what, PeftTextTransformer original, PeftTextTransformer imported)
{
    var a = Scores(original);
    var b = Scores(imported);
    double worst = a.Zip(b, (x, y) => x.Zip(y, (p, q) => Math.Abs(p - q)).Max()).Max();
    Console.WriteLine($"Imported {what}: {a.Count} test rows, largest score difference {worst:E2} "
        + (worst <= 1e-5 ? "(scores match)" : "(SCORES DIFFER)"));
}

List<float[]> Scores(ITransformer t) => t.Transform(keyed.Transform(test)).GetColumn<float[]>("Score").ToList();
