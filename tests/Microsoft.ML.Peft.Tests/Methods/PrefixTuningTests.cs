using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.AdditiveTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// Prefix tuning changes the output from the start (as in peft), so there is no identity-at-init test; nor a merge
/// test.
/// </summary>
[TestClass]
public sealed class PrefixTuningTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // Plain: P·L·2·H = 20 · 6 · 2 · 384 = 92,160.
        Assert.AreEqual(20L * L * 2 * H + MiniLmHead, TrainableOnMiniLm(new PrefixTuningConfig()));
        Assert.AreEqual(92_160L + MiniLmHead, TrainableOnMiniLm(new PrefixTuningConfig()));
        // With the MLP (m = 512): P·H + H·m + m + m·L·2·H + L·2·H.
        long reparam = 20L * H + H * 512 + 512 + 512L * L * 2 * H + L * 2 * H;
        Assert.AreEqual(2_568_704L, reparam);
        Assert.AreEqual(reparam + MiniLmHead, TrainableOnMiniLm(new PrefixTuningConfig { Reparameterize = true }));
    }

    [TestMethod]
    public void FoldingTheMlpKeepsOutputsAndLeavesPlainPrefixes()
    {
        var (ids, mask) = Batch();
        var config = new PrefixTuningConfig { Reparameterize = true, NumVirtualTokens = 4, ProjectionHiddenSize = 8 };
        using var model = PeftModel.Create(Encoder(1), config, 2);
        model.eval();
        using var before = model.forward(ids, mask, null);
        config.PrepareForInference(model);
        using var after = model.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(before, after));
        var prefixNames = model.named_parameters().Select(p => p.name).Where(config.IsTrainable).ToArray();
        CollectionAssert.AreEqual(new[] { "prefix_encoder.past_key_values" }, prefixNames);
        // Tiny: 2 layers, hidden 16 → P · L · 2 · H = 4 · 2 · 2 · 16.
        Assert.AreEqual(
            4L * 2 * 2 * 16,
            model.named_parameters().Single(p => p.name == "prefix_encoder.past_key_values").parameter.numel());
        config.PrepareForInference(model); // a second fold is a no-op
        using var again = model.forward(ids, mask, null);
        Assert.AreEqual(0f, MaxDiff(after, again));
    }

    [TestMethod]
    public void PrefixesChangeTheOutputButPaddingStaysInvisible()
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(2);
        plain.eval();
        using var baseline = plain.forward(ids, mask, null);
        using var model = PeftModel.Create(Encoder(2), new PrefixTuningConfig { NumVirtualTokens = 3 }, 2);
        model.eval();
        using var actual = model.Encoder.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-3f, MaxDiff(actual, baseline));
        Assert.AreEqual(5L, actual.shape[1]); // prefixes add keys, not output positions
        Assert.AreEqual(0f, PaddingLeak(model), 1e-5f);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        foreach (bool reparameterize in new[] { false, true })
        {
            var (expected, actual, saved) = RoundTrip(new PrefixTuningConfig
            {
                Reparameterize = reparameterize, NumVirtualTokens = 4, ProjectionHiddenSize = 16,
            });
            CollectionAssert.AreEqual(expected, actual, $"reparameterize {reparameterize}");
            // Either way the saved model holds the prefixes themselves, never the MLP.
            CollectionAssert.AreEqual(
                new[] { "classifier.bias", "classifier.weight", "prefix_encoder.past_key_values" }, saved);
        }
    }

    [TestMethod]
    public void BadOptionsNameTheOptionAndOptionsRoundTrip()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new PrefixTuningConfig { NumVirtualTokens = 0 }.Validate());
        StringAssert.Contains(e.Message, "NumVirtualTokens");
        var m = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new PrefixTuningConfig { ProjectionHiddenSize = 0 }.Validate());
        StringAssert.Contains(m.Message, "ProjectionHiddenSize");
        var back = (PrefixTuningConfig)PeftMethodConfig.FromJson(new PrefixTuningConfig
        {
            NumVirtualTokens = 7, Reparameterize = true, ProjectionHiddenSize = 64,
        }.ToJson());
        Assert.AreEqual(7, back.NumVirtualTokens);
        Assert.IsTrue(back.Reparameterize);
        Assert.AreEqual(64, back.ProjectionHiddenSize);
    }
}
