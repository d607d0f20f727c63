using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Modeling;
using Microsoft.ML.Peft.Tests.Stages;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>Shared pieces of the adapter, prefix, prompt, MAM and UniPELT tests.</summary>
internal static class AdditiveTestKit
{
    public static EncoderConfig MiniLm() => ReparamTestKit.MiniLm();

    /// <summary>MiniLM-L6's shape: 6 layers, hidden 384.</summary>
    public const int L = 6, H = 384;

    /// <summary>The 2-class head: 384 · 2 + 2.</summary>
    public const long MiniLmHead = ReparamTestKit.MiniLmHead;

    public static BertModel Encoder(int seed, EncoderConfig? config = null) =>
        PartialMethodsTestKit.Encoder(seed, config);

    public static (Tensor Ids, Tensor Mask) Batch() => PartialMethodsTestKit.Batch();

    public static float MaxDiff(Tensor a, Tensor b) => ReparamTestKit.MaxDiff(a, b);

    public static void Perturb(PeftModel model, string part, double std) =>
        ReparamTestKit.Perturb(model, part, std);

    /// <summary>
    /// Scores the second row of <see cref="Batch"/> alone (no padding) and inside the padded batch, and returns the
    /// largest difference of its encoder outputs over its real positions: zero when padding cannot leak into a row.
    /// </summary>
    public static float PaddingLeak(PeftModel model)
    {
        var (ids, mask) = Batch();
        model.eval();
        using var _ = no_grad();
        int p = model.Encoder.PromptLength;
        using var batched = model.Encoder.forward(ids, mask, null);
        using var alone = model.Encoder.forward(ids[1..2, ..3], mask[1..2, ..3], null);
        return MaxDiff(batched[1..2, ..(p + 3)], alone);
    }

    /// <summary>
    /// Trainable parameter count right after attaching <paramref name="method"/> to a random MiniLM-shaped encoder with
    /// a 2-class head.
    /// </summary>
    public static long TrainableOnMiniLm(PeftMethodConfig method)
    {
        using var model = PeftModel.Create(Encoder(3, MiniLm()), method, 2);
        return model.CountParameters().Trainable;
    }

    /// <summary>
    /// Trains one epoch on the tiny ONNX base, saves, reloads in a fresh context and returns (scores before, scores
    /// after, the names of the tensors the saved model holds).
    /// </summary>
    public static (List<string> Expected, List<string> Actual, string[] SavedNames) RoundTrip(
        PeftMethodConfig method, double learningRate = 1e-2)
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
                LearningRate = learningRate,
                Method = method,
            }))
            .Fit(data);
        string zip = Path.Combine(temp.Path, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, zip);
        var expected = RowFormatter.Format(model.Transform(data), ["Score"]);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        var actual = RowFormatter.Format(loaded.Transform(data), ["Score"]);
        var stage = ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        return (expected, actual, stage.TrainedTensors().Keys.Order().ToArray());
    }
}
