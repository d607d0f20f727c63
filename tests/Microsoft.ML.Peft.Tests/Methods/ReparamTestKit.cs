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

/// <summary>Shared pieces of the DoRA, AdaLoRA, QLoRA and ProPETL tests.</summary>
internal static class ReparamTestKit
{
    public static EncoderConfig MiniLm() => PartialMethodsTestKit.MiniLm;

    /// <summary>The 2-class head: 384 · 2 + 2.</summary>
    public const long MiniLmHead = PartialMethodsTestKit.MiniLmHead;

    public static BertModel Encoder(int seed, EncoderConfig? config = null) =>
        PartialMethodsTestKit.Encoder(seed, config);

    public static (Tensor Ids, Tensor Mask) Batch() => PartialMethodsTestKit.Batch();

    /// <summary>Max |a − b| of two tensors.</summary>
    public static float MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }

    /// <summary>
    /// Sets every parameter whose name contains <paramref name="part"/> to N(0, <paramref name="std"/>): a
    /// trained-looking update.
    /// </summary>
    public static void Perturb(PeftModel model, string part, double std)
    {
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains(part, StringComparison.Ordinal)) p.normal_(0, std);
    }

    /// <summary>
    /// Trains one epoch on the tiny ONNX base, saves, reloads in a fresh context and returns (scores before, scores
    /// after, the trained stage's tensors) so tests can also check what was saved.
    /// </summary>
    public static (List<string> Expected, List<string> Actual, PeftTextTransformer Stage) RoundTrip(
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
        return (expected, actual, stage);
    }

    /// <summary>What the stage saves: the head and every parameter its method trains, by full name.</summary>
    public static Dictionary<string, Tensor> Trained(PeftTextTransformer stage)
    {
        var method = stage.Method;
        return stage.Model.named_parameters()
            .Where(p => p.name.StartsWith("classifier.", StringComparison.Ordinal) || method.IsTrainable(p.name))
            .ToDictionary(p => p.name, p => (Tensor)p.parameter);
    }
}
