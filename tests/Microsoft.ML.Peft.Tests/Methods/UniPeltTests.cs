using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.UniPelt;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.AdditiveTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// UniPELT's gates, padding and saved tensors. That its LoRA and adapter parts start as the identity (UniPELT as a
/// whole does not: it carries prefixes) is checked with every method in <see cref="MethodContractTests"/>.
/// </summary>
[TestClass]
public sealed class UniPeltTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        long lora = L * 2L * (2 * 8 * H + H + 1);                 // gated LoRA on query, value
        long prefix = 10L * L * 2 * H + L * (H + 1);              // plain prefixes + one gate per layer
        long adapter = L * (H * 24L + 24 + 24L * H + H + H + 1);  // gated Pfeiffer adapter, b = 24
        Assert.AreEqual(242_088L, lora + prefix + adapter);
        Assert.AreEqual(lora + prefix + adapter + MiniLmHead, TrainableOnMiniLm(new UniPeltConfig()));
    }

    [TestMethod]
    public void ClosedGatesSwitchTheirPartOff()
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(2);
        plain.eval();
        using var expected = plain.forward(ids, mask, null);
        using var model = PeftModel.Create(Encoder(2), new UniPeltConfig(), 2);
        model.eval();
        Perturb(model, "lora_B", 0.5);
        Perturb(model, "adapter_up", 0.5);
        void SetGates(string which, double bias)
        {
            using var _ = no_grad();
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith(which + ".bias", StringComparison.Ordinal)) p.fill_(bias);
        }
        // Closed prefix gates scale keys and values to zero: the same as open gates over all-zero prefixes.
        SetGates("prefix_gate", -100);
        using var closedPrefix = model.Encoder.forward(ids, mask, null);
        SetGates("prefix_gate", 100);
        using (no_grad()) model.named_parameters().Single(p =>
            p.name == "prefix_encoder.past_key_values").parameter.zero_();
        using var zeroPrefix = model.Encoder.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(closedPrefix, zeroPrefix));

        // Closed LoRA and adapter gates: with the prefixes set aside, the base model again, although B and up are
        // non-zero.
        foreach (var layer in model.Encoder.Layers) layer.attention.self.Prefix = null;
        using var open = model.Encoder.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-2f, MaxDiff(open, expected));
        SetGates("lora_gate", -100);
        SetGates("adapter_gate", -100);
        using var closed = model.Encoder.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(closed, expected));
    }

    [TestMethod]
    public void GatesKeepARowsOutputIndependentOfItsBatchsPadding()
    {
        using var model = PeftModel.Create(Encoder(3), new UniPeltConfig(), 2);
        Perturb(model, "lora_B", 0.5);
        Perturb(model, "adapter_up", 0.5);
        Perturb(model, "_gate.weight", 0.5);
        Assert.AreEqual(0f, PaddingLeak(model), 1e-5f);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (expected, actual, saved) = RoundTrip(new UniPeltConfig { NumVirtualTokens = 4 }, learningRate: 5e-3);
        CollectionAssert.AreEqual(expected, actual);
        foreach (var part in new[] { ".lora_A.", ".lora_B.", ".lora_gate.", "prefix_encoder.past_key_values",
            ".prefix_gate.", ".adapter.adapter_gate." })
            Assert.IsTrue(saved.Any(n => n.Contains(part, StringComparison.Ordinal)),
                $"{part} not saved: {string.Join(", ", saved)}");
    }

    [TestMethod]
    public void BadOptionsNameTheOptionAndOptionsRoundTrip()
    {
        var r = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new UniPeltConfig { LoraRank = 0 }.Validate());
        StringAssert.Contains(r.Message, "LoraRank");
        var f = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new UniPeltConfig {
            ReductionFactor = 0 }.Validate());
        StringAssert.Contains(f.Message, "ReductionFactor");
        var t = Assert.ThrowsExactly<ArgumentException>(() => PeftModel.Create(Encoder(4),
            new UniPeltConfig { LoraTargetModules = ["qurey"] }, 2));
        StringAssert.Contains(t.Message, "qurey");
        var back = (UniPeltConfig)PeftMethodConfig.FromJson(new UniPeltConfig { LoraRank = 4, NumVirtualTokens = 6,
            LoraTargetModules = ["query"] }.ToJson());
        Assert.AreEqual(4, back.LoraRank);
        Assert.AreEqual(6, back.NumVirtualTokens);
        CollectionAssert.AreEqual(new[] { "query" }, back.LoraTargetModules);
    }
}
