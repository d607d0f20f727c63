using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Dora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.ReparamTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class DoraTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // LoRA's r·(in + out) plus one magnitude per output row, on query and value of 6 layers: 73,728 + 6·2·384 =
        // 78,336.
        using var model = PeftModel.Create(Encoder(3, MiniLm()), new DoraConfig(), 2);
        var (trainable, _) = model.CountParameters();
        Assert.AreEqual(6L * 2 * (8 * (384 + 384) + 384) + MiniLmHead, trainable);
        Assert.AreEqual(78_336L + MiniLmHead, trainable);
    }

    [TestMethod]
    public void MagnitudeStartsAtTheRowNormsOfTheBaseWeight()
    {
        using var model = PeftModel.Create(Encoder(2), new DoraConfig(), 2);
        var layer = (DoraLinear)ModuleSurgery.Get(model, "bert.encoder.layer.0.attention.self.query");
        using var norms = layer.base_layer.weight!.pow(2).sum(1).sqrt();
        Assert.AreEqual(0f, MaxDiff(layer.lora_magnitude_vector.weight, norms), 1e-6f);
        var names = model.TrainableParameters().Select(p => p.Name).ToList();
        CollectionAssert.Contains(names, "bert.encoder.layer.0.attention.self.query.lora_magnitude_vector.weight");
        CollectionAssert.Contains(names, "bert.encoder.layer.0.attention.self.value.lora_A.weight");
    }

    [TestMethod]
    public void ForwardMatchesTheDecomposedWeight()
    {
        // With a non-zero update and magnitude, the layer must compute m / ‖W + sBA‖_c · (W + sBA) x + b.
        using var model = PeftModel.Create(Encoder(4), new DoraConfig { Rank = 2, Alpha = 4 }, 2);
        model.eval();
        Perturb(model, "lora_B", 0.3);
        Perturb(model, "lora_magnitude_vector", 1.0);
        var layer = (DoraLinear)ModuleSurgery.Get(model, "bert.encoder.layer.1.attention.self.value");
        using var x = randn(3, 16);
        using var _ = no_grad();
        var w = layer.base_layer.weight! + layer.lora_B.weight!.matmul(layer.lora_A.weight!) * 2.0;
        var expected = nn.functional.linear(x,
            w / w.pow(2).sum(1, keepdim: true).sqrt() * layer.lora_magnitude_vector.weight.unsqueeze(1),
                layer.base_layer.bias);
        using var actual = layer.forward(x);
        Assert.IsLessThan(1e-5f, MaxDiff(actual, expected));
    }

    [TestMethod]
    public void NormIsDetachedSoOnlyTheDirectionTermCarriesGradient()
    {
        // peft detaches ‖W + sBA‖_c: the gradient reaching B must be that of m/‖·‖ · s·B·A x alone
        // (norm constant).
        using var model = PeftModel.Create(Encoder(5), new DoraConfig { Rank = 2, Alpha = 2, Dropout = 0 }, 2);
        model.train();
        Perturb(model, "lora_B", 0.3);
        var layer = (DoraLinear)ModuleSurgery.Get(model, "bert.encoder.layer.0.attention.self.query");
        using var x = randn(4, 16);
        using var y = layer.forward(x).sum();
        y.backward();
        Tensor expected;
        using (no_grad())
        {
            var w = layer.base_layer.weight! + layer.lora_B.weight!.matmul(layer.lora_A.weight!);
            var scale = layer.lora_magnitude_vector.weight / w.pow(2).sum(1).sqrt();
            // d/dB of sum(scale ⊙ (B A x)) = scale[:,None] · 1 · (A x)ᵀ summed over rows of x.
            expected = scale.unsqueeze(1) * layer.lora_A.weight!.matmul(x.t()).sum(1).unsqueeze(0);
        }
        Assert.IsLessThan(1e-4f, MaxDiff(layer.lora_B.weight!.grad!, expected));
    }

    [TestMethod]
    public void MergeAndUnmergeGiveIdenticalLogitsAndRestoreTheWeight()
    {
        var (ids, mask) = Batch();
        var config = new DoraConfig { Rank = 4, Alpha = 8, TargetModules = ["query", "value", "intermediate.dense"] };
        using var model = PeftModel.Create(Encoder(6), config, 3);
        model.eval();
        Perturb(model, "lora_B", 0.5);
        Perturb(model, "lora_magnitude_vector", 1.0);
        var layer = (DoraLinear)ModuleSurgery.Get(model, "bert.encoder.layer.0.intermediate.dense");
        using var original = layer.base_layer.weight!.detach().clone();
        using var unmerged = model.forward(ids, mask, null);
        Assert.IsTrue(config.Merge(model));
        Assert.IsTrue(layer.Merged);
        using var merged = model.forward(ids, mask, null);
        config.Unmerge(model);
        using var again = model.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(merged, unmerged));
        Assert.AreEqual(0f, MaxDiff(again, unmerged));
        Assert.AreEqual(0f, MaxDiff(layer.base_layer.weight!, original), "unmerge must restore W exactly");
        using var plain = PeftModel.Create(Encoder(6),
            new DoraConfig { Rank = 4, Alpha = 8, TargetModules = ["query", "value", "intermediate.dense"] }, 3);
        plain.eval();
        plain.classifier.weight!.detach().copy_(model.classifier.weight!);
        using var baseline = plain.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-3f, MaxDiff(baseline, unmerged), "the update must matter");
    }

    [TestMethod]
    public void OptionsRoundTripThroughJsonAndValidate()
    {
        var back = (DoraConfig)PeftMethodConfig.FromJson(new DoraConfig { Rank = 4, Alpha = 32, UseRsLora = true,
            TargetModules = ["key"] }.ToJson());
        Assert.AreEqual(4, back.Rank);
        Assert.AreEqual(32.0, back.Alpha);
        Assert.IsTrue(back.UseRsLora);
        CollectionAssert.AreEqual(new[] { "key" }, back.TargetModules);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new DoraConfig { Dropout = 1.5 }.Validate());
        StringAssert.Contains(e.Message, "Dropout");
    }

    [TestMethod]
    public void SaveAndLoadGiveIdenticalScores()
    {
        var (expected, actual, stage) = RoundTrip(new DoraConfig { Rank = 2, Alpha = 4 });
        CollectionAssert.AreEqual(expected, actual);
        Assert.IsTrue(stage.IsMerged);
        Assert.IsTrue(Trained(stage).Keys.Any(k => k.EndsWith(".lora_magnitude_vector.weight")));
    }
}
