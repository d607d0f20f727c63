using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.BitFit;
using Microsoft.ML.Peft.Modeling;
using static Microsoft.ML.Peft.Tests.Methods.PartialMethodsTestKit;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class BitFitTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        long Trainable(BitFitBiases biases)
        {
            using var model = PeftModel.Create(Encoder(3, MiniLm), new BitFitConfig { Biases = biases }, 2);
            return model.CountParameters().Trainable;
        }
        // Per layer: q, k, v, attention output, 2 LayerNorms, FFN output (384 each) + intermediate 1536; + embedding
        // LayerNorm.
        Assert.AreEqual(6L * (7 * 384 + 1536) + 384 + MiniLmHead, Trainable(BitFitBiases.All)); // 25,728 + head
        // 16,128 + head
        Assert.AreEqual(6L * (3 * 384 + 1536) + MiniLmHead, Trainable(BitFitBiases.QueryKeyValueIntermediate));
        Assert.AreEqual(6L * (384 + 1536) + MiniLmHead, Trainable(BitFitBiases.QueryIntermediate)); // 11,520 + head
    }

    [TestMethod]
    public void OnlyBiasesTrain()
    {
        using var model = PeftModel.Create(Encoder(4), new BitFitConfig { Biases = BitFitBiases.QueryIntermediate }, 2);
        var names = model.TrainableParameters().Select(p => p.Name).Where(n => !n.StartsWith("classifier.")).ToList();
        CollectionAssert.AreEquivalent(new[]
        {
            "bert.encoder.layer.0.attention.self.query.bias", "bert.encoder.layer.0.intermediate.dense.bias",
            "bert.encoder.layer.1.attention.self.query.bias", "bert.encoder.layer.1.intermediate.dense.bias",
        }, names);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (before, after, stage) = RoundTrip(new BitFitConfig());
        CollectionAssert.AreEqual(before, after);
        Assert.IsFalse(stage.IsMerged);
        // Only biases and the head are stored.
        Assert.IsTrue(stage.TrainedTensors().Keys.All(k => k.EndsWith(".bias") || k.StartsWith("classifier.")));
    }

    [TestMethod]
    public void OptionsValidateAndRoundTripThroughJson()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new BitFitConfig {
            Biases = (BitFitBiases)42 }.Validate());
        StringAssert.Contains(e.Message, "Biases");
        var back = (BitFitConfig)PeftMethodConfig.FromJson(new BitFitConfig {
            Biases = BitFitBiases.QueryKeyValueIntermediate }.ToJson());
        Assert.AreEqual(BitFitBiases.QueryKeyValueIntermediate, back.Biases);
    }
}
