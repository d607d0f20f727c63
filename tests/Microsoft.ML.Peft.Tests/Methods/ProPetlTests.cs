using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.ProPetl;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.ReparamTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class ProPetlTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaForTheAdapterPrototype()
    {
        // One adapter 384 → 64 → 384 (2·384·64 + 64 + 384 = 49,600) plus per layer scores over its two weight
        // matrices (6 · 2 · 384 · 64).
        using var model = PeftModel.Create(Encoder(3, MiniLm()), new ProPetlConfig(), 2);
        var (trainable, _) = model.CountParameters();
        Assert.AreEqual(2L * 384 * 64 + 64 + 384 + 6L * 2 * 384 * 64 + MiniLmHead, trainable);
        Assert.AreEqual(344_512L + MiniLmHead, trainable);
        // The prototype is stored once, however many layers use it.
        Assert.AreEqual(1, model.TrainableParameters().Count(p => p.Name.EndsWith("adapter_down.weight")));
        Assert.AreEqual(6, model.TrainableParameters().Count(p => p.Name.EndsWith(".propetl_mask.down_mask")));
    }

    [TestMethod]
    public void TrainableCountMatchesFormulaForTheLoraPrototype()
    {
        // Shared pairs for query and value (2 · 2·384·8 = 12,288) plus per layer scores over all four matrices
        // (6 · 12,288).
        using var model = PeftModel.Create(
            Encoder(3, MiniLm()), new ProPetlConfig { Prototype = ProPetlPrototype.Lora }, 2);
        var (trainable, _) = model.CountParameters();
        Assert.AreEqual(2L * 2 * 384 * 8 + 6L * 2 * 2 * 384 * 8 + MiniLmHead, trainable);
        Assert.AreEqual(86_016L + MiniLmHead, trainable);
    }

    [TestMethod]
    public void UntrainedPrototypeLeavesEncoderOutputUnchanged()
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(1);
        plain.eval();
        using var expected = plain.forward(ids, mask, null);
        foreach (var kind in new[] { ProPetlPrototype.Adapter, ProPetlPrototype.Lora })
        {
            using var model = PeftModel.Create(Encoder(1), new ProPetlConfig { Prototype = kind }, 3);
            model.eval();
            using var actual = model.Encoder.forward(ids, mask, null);
            Assert.AreEqual(0f, MaxDiff(actual, expected), 1e-6f, kind.ToString());
        }
    }

    [TestMethod]
    public void HardMasksKeepTheTopScoresAtTheRequestedSparsity()
    {
        using var scores = tensor(new float[] { 0.1f, -0.9f, 0.3f, -0.2f, 0.8f, 0.05f, -0.4f, 0.6f }, [2, 4]);
        using var half = ScoreMask.Hard(scores, 0.5);
        CollectionAssert.AreEqual(new float[] { 0, 1, 0, 0, 1, 0, 1, 1 }, half.data<float>().ToArray());
        using var quarter = ScoreMask.Hard(scores, 0.25);
        Assert.AreEqual(6f, quarter.sum().item<float>());
        using var none = ScoreMask.Hard(scores, 0);
        Assert.AreEqual(8f, none.sum().item<float>());
    }

    [TestMethod]
    public void StraightThroughEstimatorSendsGradientsToTheScores()
    {
        using var scores = new TorchSharp.Modules.Parameter(tensor(new float[] { 0.1f, -0.9f, 0.3f, -0.2f }));
        using var weight = tensor(new float[] { 1f, 2f, 3f, 4f });
        using var m = ScoreMask.Apply(scores, 0.5, training: true);
        CollectionAssert.AreEqual(
            new float[] { 0, 1, 1, 0 }, m.detach().data<float>().ToArray(), "the value is the hard mask");
        using var loss = (m * weight).sum();
        loss.backward();
        // ∂/∂s of Σ mask·w through |s| straight-through: w · sign(s), also for masked-out entries.
        CollectionAssert.AreEqual(new float[] { 1f, -2f, 3f, -4f }, scores.grad!.data<float>().ToArray());
    }

    [TestMethod]
    public void LayersShareOnePrototypeThroughDifferentMasks()
    {
        using var model = PeftModel.Create(Encoder(2), new ProPetlConfig(), 2);
        model.train();
        Perturb(model, "adapter_up", 0.5);
        var (ids, mask) = Batch();
        using var output = model.forward(ids, mask, null);
        using var loss = output.pow(2).sum();
        loss.backward();
        var grads = model.TrainableParameters().Where(p => p.Name.Contains("propetl"))
            .ToDictionary(p => p.Name, p => p.Parameter.grad);
        // Both layers' scores and the one shared prototype receive gradient.
        foreach (var name in new[] { "propetl_prototype.adapter_up.weight", "propetl_prototype.adapter_down.weight",
                                     "bert.encoder.layer.0.output.dense.propetl_mask.up_mask",
                                     "bert.encoder.layer.1.output.dense.propetl_mask.down_mask" })
        {
            Assert.IsNotNull(grads[name], name);
            Assert.IsGreaterThan(0f, grads[name]!.abs().sum().item<float>(), name);
        }
        // Different layers see different halves of the prototype.
        var l0 = (ProPetlAdapterLayer)ModuleSurgery.Get(model, "bert.encoder.layer.0.output.dense");
        var l1 = (ProPetlAdapterLayer)ModuleSurgery.Get(model, "bert.encoder.layer.1.output.dense");
        using var m0 = ScoreMask.Hard(l0.propetl_mask.down_mask, 0.5);
        using var m1 = ScoreMask.Hard(l1.propetl_mask.down_mask, 0.5);
        Assert.AreEqual(0.5f, m0.mean().item<float>());
        Assert.IsGreaterThan(0f, MaxDiff(m0, m1));
    }

    [TestMethod]
    public void LoraPrototypeMergesAndUnmerges()
    {
        var (ids, mask) = Batch();
        var config = new ProPetlConfig { Prototype = ProPetlPrototype.Lora, Rank = 4 };
        using var model = PeftModel.Create(Encoder(6), config, 3);
        model.eval();
        Perturb(model, "propetl_prototype.query.lora_B", 0.5);
        Perturb(model, "propetl_prototype.value.lora_B", 0.5);
        using var unmerged = model.forward(ids, mask, null);
        Assert.IsTrue(config.Merge(model));
        using var merged = model.forward(ids, mask, null);
        config.Unmerge(model);
        using var again = model.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(merged, unmerged));
        Assert.IsLessThan(1e-5f, MaxDiff(again, unmerged));
        using var plain = PeftModel.Create(
            Encoder(6), new ProPetlConfig { Prototype = ProPetlPrototype.Lora, Rank = 4 }, 3);
        plain.eval();
        plain.classifier.weight!.detach().copy_(model.classifier.weight!);
        using var baseline = plain.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-3f, MaxDiff(baseline, unmerged), "the update must matter");
        Assert.IsFalse(new ProPetlConfig().Merge(model), "the adapter prototype does not merge");
    }

    [TestMethod]
    public void OptionsRoundTripThroughJsonAndValidate()
    {
        var back = (ProPetlConfig)PeftMethodConfig.FromJson(new ProPetlConfig
        {
            Prototype = ProPetlPrototype.Lora, Sparsity = 0.3, BottleneckSize = 16, Rank = 2,
        }.ToJson());
        Assert.AreEqual(ProPetlPrototype.Lora, back.Prototype);
        Assert.AreEqual(0.3, back.Sparsity);
        Assert.AreEqual(16, back.BottleneckSize);
        Assert.AreEqual(2, back.Rank);
        StringAssert.Contains(
            Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
                new ProPetlConfig { Sparsity = 1 }.Validate()).Message,
            "Sparsity");
    }

    [TestMethod]
    public void SaveAndLoadGiveIdenticalScores()
    {
        foreach (var kind in new[] { ProPetlPrototype.Adapter, ProPetlPrototype.Lora })
        {
            var (expected, actual, stage) = RoundTrip(
                new ProPetlConfig { Prototype = kind, BottleneckSize = 4, Rank = 2 });
            CollectionAssert.AreEqual(expected, actual, kind.ToString());
            Assert.AreEqual(kind == ProPetlPrototype.Lora, stage.IsMerged);
            Assert.IsTrue(Trained(stage).Keys.Any(k => k.StartsWith("propetl_prototype.")));
        }
    }

    [TestMethod]
    public void OnnxExportOfEitherPrototypeScoresLikeTheStage() =>
        AdapterOnnxParityKit.AssertExportsScoreLikeTheStage(
            new ProPetlConfig { Prototype = ProPetlPrototype.Lora, Sparsity = 0.3 },
            new ProPetlConfig { BottleneckSize = 8, Sparsity = 0.7 });
}
