using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Methods.Mam;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Modeling;
using static Microsoft.ML.Peft.Tests.Methods.AdditiveTestKit;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// MAM carries prefixes, so its output differs from the base from the start: no identity-at-init or merge test.
/// </summary>
[TestClass]
public sealed class MamAdapterTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // Prefix P·L·2·H = 30 · 6 · 2 · 384 = 138,240; FFN parallel adapter b = 192: 6 · 148,032 = 888,192.
        long prefix = 30L * L * 2 * H, adapters = L * (H * 192L + 192 + 192L * H + H);
        Assert.AreEqual(1_026_432L, prefix + adapters);
        Assert.AreEqual(prefix + adapters + MiniLmHead, TrainableOnMiniLm(new MamAdapterConfig()));
        long mlp = 30L * H + H * 512 + 512 + 512L * L * 2 * H + L * 2 * H;
        Assert.AreEqual(mlp + adapters + MiniLmHead, TrainableOnMiniLm(new MamAdapterConfig { Reparameterize = true }));
    }

    [TestMethod]
    public void PrefixesInEveryAttentionParallelAdaptersBesideEveryFeedForward()
    {
        using var model = PeftModel.Create(Encoder(1), new MamAdapterConfig(), 2);
        foreach (var layer in model.Encoder.Layers)
        {
            Assert.IsNotNull(layer.attention.self.Prefix);
            Assert.IsNull(layer.attention.output.Adapter);
            Assert.IsInstanceOfType<BottleneckAdapter>(layer.output.Adapter);
        }
        // The same modules as the stand-alone methods: no copies.
        Assert.IsInstanceOfType<PrefixEncoder>(ModuleSurgery.Get(model, PrefixEncoder.ChildName));
        Assert.AreEqual(0f, PaddingLeak(model), 1e-5f);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (expected, actual, saved) = RoundTrip(
            new MamAdapterConfig { NumVirtualTokens = 4, Reparameterize = true, ProjectionHiddenSize = 16 });
        CollectionAssert.AreEqual(expected, actual);
        Assert.Contains("prefix_encoder.past_key_values", saved);
        Assert.IsFalse(saved.Any(n => n.Contains("transform")), string.Join(", ", saved));
        Assert.IsTrue(saved.Any(n => n.EndsWith(".output.adapter.adapter_up.weight")), string.Join(", ", saved));
    }

    [TestMethod]
    public void BadOptionsNameTheOptionAndOptionsRoundTrip()
    {
        var d = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new MamAdapterConfig { AdapterDropout = 1 }.Validate());
        StringAssert.Contains(d.Message, "AdapterDropout");
        var s = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new MamAdapterConfig { Scaling = -1 }.Validate());
        StringAssert.Contains(s.Message, "Scaling");
        var p = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new MamAdapterConfig { NumVirtualTokens = 0 }.Validate());
        StringAssert.Contains(p.Message, "NumVirtualTokens");
        var back = (MamAdapterConfig)PeftMethodConfig.FromJson(
            new MamAdapterConfig { NumVirtualTokens = 12, ReductionFactor = 4, Scaling = 2 }.ToJson());
        Assert.AreEqual(12, back.NumVirtualTokens);
        Assert.AreEqual(4, back.ReductionFactor);
        Assert.AreEqual(2.0, back.Scaling);
    }

    [TestMethod]
    public void OnnxExportOfFoldedPrefixesScoresLikeTheStage() =>
        AdapterOnnxParityKit.AssertExportsScoreLikeTheStage(new MamAdapterConfig
        {
            NumVirtualTokens = 5, Reparameterize = true, ProjectionHiddenSize = 16,
            NonLinearity = AdapterNonLinearity.Gelu,
        });
}
