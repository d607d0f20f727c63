// --int8-accuracy: SST-2 dev accuracy of a LoRA stage's exported ONNX model in float32 and with dynamic int8 weights
// (OnnxExportOptions.QuantizeInt8), both scored by bare ONNX Runtime sessions on the stage's own token ids.

using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Benchmarks;

internal static class Int8Accuracy
{
    private sealed class Row
    {
        [LoadColumn(0)] public string Label { get; set; } = "";
        [LoadColumn(1)] public string Text { get; set; } = "";
    }

    public static int Run(string[] args)
    {
        int trainRows = 2000, threads = Environment.ProcessorCount;
        string data = Path.Combine("..", "shared", "data", "sst2");
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--train-rows": trainRows = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--data": data = args[++i]; break;
            }
        if (!File.Exists(Path.Combine(data, "dev.tsv")))
        {
            Console.Error.WriteLine($"SST-2 not found under '{Path.GetFullPath(data)}' (pass --data <folder>).");
            return 2;
        }
        Console.WriteLine($"# int8 export accuracy: LoRA on {trainRows} SST-2 train rows, scored on SST-2 dev");
        Console.WriteLine($"- cpu: {CpuInfo.Name()}; {Environment.ProcessorCount} logical CPUs; flags: " +
            CpuInfo.RelevantFlags());
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromTextFile<Row>(Path.Combine(data, "train.tsv"), hasHeader: true,
            allowQuoting: false);
        train = ml.Data.TakeRows(train, trainRows);
        var dev = ml.Data.CreateEnumerable<Row>(ml.Data.LoadFromTextFile<Row>(Path.Combine(data, "dev.tsv"),
            hasHeader: true, allowQuoting: false), reuseRowObject: false).ToList();

        var watch = Stopwatch.StartNew();
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train).Transform(train);
        using var stage = ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", Precision = PeftPrecision.Float32,
            ScoringEngine = ScoringEngine.TorchSharp, NumberOfThreads = threads,
        }).Fit(keyed);
        Console.WriteLine($"- trained in {watch.Elapsed.TotalSeconds:F0} s; " +
            $"max length {stage.Saved.MaxSequenceLength}; peak RSS so far " +
            $"{(Microsoft.ML.Peft.Runtime.ProcessMemory.Peak() ?? 0) >> 20} MiB");

        string[] labels = stage.Saved.Labels!.Values;
        var tokens = stage.Tokenizer.EncodeBatch(dev.Select(r => (string?)r.Text).ToList(), null,
            stage.Saved.MaxSequenceLength);
        double Accuracy(bool int8, out double ms)
        {
            using var stream = new MemoryStream();
            stage.ExportOnnx(stream, new OnnxExportOptions { QuantizeInt8 = int8 });
            using var options = new SessionOptions { IntraOpNumThreads = threads };
            using var session = new InferenceSession(stream.ToArray(), options);
            long[] shape = [tokens.BatchSize, tokens.SequenceLength];
            using var ids = OrtValue.CreateTensorValueFromMemory(tokens.InputIds, shape);
            using var mask = OrtValue.CreateTensorValueFromMemory(tokens.AttentionMask, shape);
            using var types = OrtValue.CreateTensorValueFromMemory(tokens.TokenTypeIds, shape);
            using var run = new RunOptions();
            var time = Stopwatch.StartNew();
            using var outputs = session.Run(run, ["input_ids", "attention_mask", "token_type_ids"],
                [ids, mask, types], ["PredictedLabel"]);
            ms = time.Elapsed.TotalMilliseconds;
            var predicted = outputs[0].GetTensorDataAsSpan<long>().ToArray();
            return dev.Where((r, i) => labels[predicted[i]] == r.Label).Count() / (double)dev.Count;
        }
        double fp32 = Accuracy(false, out double fp32Ms), int8 = Accuracy(true, out double int8Ms);
        Console.WriteLine();
        Console.WriteLine("| export | SST-2 dev accuracy | one padded batch of all dev rows |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine($"| float32 | {fp32:F4} | {fp32Ms:F0} ms |");
        Console.WriteLine($"| int8 (QuantizeInt8) | {int8:F4} | {int8Ms:F0} ms |");
        Console.WriteLine();
        Console.WriteLine($"int8 − float32: {100 * (int8 - fp32):+0.00;-0.00} points ({dev.Count} dev rows).");
        return Math.Abs(int8 - fp32) <= 0.01 ? 0 : 1;
    }
}
