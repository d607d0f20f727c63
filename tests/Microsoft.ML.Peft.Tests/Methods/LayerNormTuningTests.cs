using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.LayerNormTuning;
using Microsoft.ML.Peft.Modeling;
using static Microsoft.ML.Peft.Tests.Methods.PartialMethodsTestKit;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class LayerNormTuningTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        using var with = PeftModel.Create(Encoder(3, MiniLm), new LayerNormTuningConfig(), 2);
        using var without = PeftModel.Create(Encoder(3, MiniLm),
            new LayerNormTuningConfig { IncludeEmbeddingLayerNorm = false }, 2);
        // 6 layers × 2 LayerNorms × (gain + bias) × 384, plus the embedding LayerNorm's 2 × 384.
        Assert.AreEqual(6L * 2 * 2 * 384 + 2 * 384 + MiniLmHead, with.CountParameters().Trainable); // 9,984 + head
        Assert.AreEqual(6L * 2 * 2 * 384 + MiniLmHead, without.CountParameters().Trainable); // 9,216 + head
        Assert.IsTrue(with.TrainableParameters().All(p => p.Name.Contains(".LayerNorm.")
            || p.Name.StartsWith("classifier.")));
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (before, after, stage) = RoundTrip(new LayerNormTuningConfig());
        CollectionAssert.AreEqual(before, after);
        // Tiny ONNX base: 2 layers × 2 LayerNorms + the embedding one, gain and bias each; plus the head's weight and
        // bias.
        Assert.HasCount(5 * 2 + 2, stage.TrainedTensors());
    }

    [TestMethod]
    public void OptionsRoundTripThroughJson()
    {
        var back = (LayerNormTuningConfig)PeftMethodConfig.FromJson(new LayerNormTuningConfig {
            IncludeEmbeddingLayerNorm = false }.ToJson());
        Assert.IsFalse(back.IncludeEmbeddingLayerNorm);
    }
}
