using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// Shared pieces of the BitFit, LayerNorm-tuning, Child-Tuning and (IA)³ tests: the MiniLM-L6 shape, a small batch, a
/// save/load round trip through the ML.NET stage on the tiny ONNX base. Whether each method learns at its defaults is
/// <see cref="DefaultsLearnTests"/>' job.
/// </summary>
internal static class PartialMethodsTestKit
{
    /// <summary>The all-MiniLM-L6-v2 shape (random weights are enough for parameter counts).</summary>
    public static EncoderConfig MiniLm { get; } = new() { HiddenSize = 384, NumHiddenLayers = 6, NumAttentionHeads = 12,
        IntermediateSize = 1536, VocabSize = 30522 };

    /// <summary>The 2-class head: 384 · 2 + 2.</summary>
    public const long MiniLmHead = 384 * 2 + 2;

    public static BertModel Encoder(int seed, EncoderConfig? config = null)
    {
        torch.manual_seed(seed);
        return new BertModel(config ?? Modeling.BertModelTests.Tiny());
    }

    public static (Tensor Ids, Tensor Mask) Batch() =>
        (tensor(new long[] { 2, 7, 9, 11, 3, 2, 5, 3, 0, 0 }, [2, 5]),
            tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 5]));

    /// <summary>
    /// Trains on the tiny ONNX base, saves the pipeline to a .zip, loads it into a fresh context and returns the scores
    /// before and after (formatted exactly) and the trained stage.
    /// </summary>
    public static (List<string> Before, List<string> After, PeftTextTransformer Stage) RoundTrip(
        PeftMethodConfig method, bool merge = true)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        var data = StageTestData.Load(ml, StageTestData.Negation(48, 1));
        var model = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16,
                    MaxSequenceLength = 16,
                BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")),
                LearningRate = 1e-2, WarmupRatio = 0, Method = method, MergeForScoring = merge,
            }))
            .Fit(data);
        string zip = Path.Combine(temp.Path, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, zip);
        var before = RowFormatter.Format(model.Transform(data), ["Score"]);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        var after = RowFormatter.Format(loaded.Transform(data), ["Score"]);
        return (before, after, ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single());
    }
}
