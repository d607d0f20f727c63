using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Adapters;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.AdditiveTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class AdapterTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // Sequential: b = 384 / 16 = 24, per adapter H·b + b + b·H + H = 18,840; Houlsby 2 per layer, Pfeiffer 1.
        long seq = H * 24 + 24 + 24 * H + H;
        Assert.AreEqual(18_840L, seq);
        Assert.AreEqual(L * 2 * seq + MiniLmHead, TrainableOnMiniLm(new BottleneckAdapterConfig()));
        Assert.AreEqual(226_080L + MiniLmHead, TrainableOnMiniLm(new BottleneckAdapterConfig()));
        Assert.AreEqual(
            L * seq + MiniLmHead,
            TrainableOnMiniLm(new BottleneckAdapterConfig { Placement = BottleneckAdapterPlacement.Pfeiffer }));
        // Parallel: b = 384 / 2 = 192, 148,032 per adapter.
        long par = H * 192 + 192 + 192 * H + H;
        Assert.AreEqual(888_192L + MiniLmHead, TrainableOnMiniLm(new ParallelAdapterConfig()));
        Assert.AreEqual(
            L * par + MiniLmHead,
            TrainableOnMiniLm(new ParallelAdapterConfig { Placement = ParallelAdapterPlacement.Attention }));
        Assert.AreEqual(
            L * 2 * par + MiniLmHead,
            TrainableOnMiniLm(new ParallelAdapterConfig { Placement = ParallelAdapterPlacement.Both }));
    }

    [TestMethod]
    public void UntrainedAdaptersLeaveEncoderOutputUnchanged()
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(1);
        plain.eval();
        using var expected = plain.forward(ids, mask, null);
        foreach (PeftMethodConfig config in new PeftMethodConfig[]
                 {
                     new BottleneckAdapterConfig { NonLinearity = AdapterNonLinearity.Gelu },
                     new BottleneckAdapterConfig
                     {
                         Placement = BottleneckAdapterPlacement.Pfeiffer, NonLinearity = AdapterNonLinearity.Swish,
                     },
                     new ParallelAdapterConfig
                     {
                         Placement = ParallelAdapterPlacement.Both, NonLinearity = AdapterNonLinearity.Tanh,
                     },
                 })
        {
            using var model = PeftModel.Create(Encoder(1), config, 2);
            model.eval();
            using var actual = model.Encoder.forward(ids, mask, null);
            Assert.AreEqual(0f, MaxDiff(actual, expected), 1e-6f, config.ToJson());
            // A trained-looking up-projection must change the output, or the comparison above proves nothing.
            Perturb(model, "adapter_up", 0.5);
            using var moved = model.Encoder.forward(ids, mask, null);
            Assert.IsGreaterThan(1e-3f, MaxDiff(moved, expected), config.ToJson());
        }
    }

    [TestMethod]
    public void AdaptersSitWhereTheirPlacementSays()
    {
        string[] Adapted(PeftMethodConfig c)
        {
            using var m = PeftModel.Create(Encoder(2), c, 2);
            return m.TrainableParameters().Select(p => p.Name).Where(n => n.EndsWith("adapter_down.weight")).ToArray();
        }
        CollectionAssert.AreEqual(
            new[] { "bert.encoder.layer.0.attention.output.adapter.adapter_down.weight",
                    "bert.encoder.layer.0.output.adapter.adapter_down.weight",
                    "bert.encoder.layer.1.attention.output.adapter.adapter_down.weight",
                    "bert.encoder.layer.1.output.adapter.adapter_down.weight" },
            Adapted(new BottleneckAdapterConfig()));
        CollectionAssert.AreEqual(
            new[] { "bert.encoder.layer.0.output.adapter.adapter_down.weight",
                    "bert.encoder.layer.1.output.adapter.adapter_down.weight" },
            Adapted(new BottleneckAdapterConfig { Placement = BottleneckAdapterPlacement.Pfeiffer }));
        CollectionAssert.AreEqual(
            new[] { "bert.encoder.layer.0.attention.output.adapter.adapter_down.weight",
                    "bert.encoder.layer.1.attention.output.adapter.adapter_down.weight" },
            Adapted(new ParallelAdapterConfig { Placement = ParallelAdapterPlacement.Attention }));
        // One slot per block: a second adapter method on the same model is refused.
        using var twice = PeftModel.Create(Encoder(2), new BottleneckAdapterConfig(), 2);
        Assert.ThrowsExactly<InvalidOperationException>(() => new ParallelAdapterConfig().Attach(twice));
    }

    [TestMethod]
    public void SequentialReadsTheProjectionParallelReadsTheSubLayerInput()
    {
        torch.manual_seed(4);
        var x = randn(2, 3, 32);
        var residual = randn(2, 3, 16);
        foreach (bool parallel in new[] { false, true })
        {
            PeftMethodConfig config = parallel
                ? new ParallelAdapterConfig { ReductionFactor = 4, Scaling = 4 }
                : new BottleneckAdapterConfig { ReductionFactor = 4 };
            using var model = PeftModel.Create(Encoder(5), config, 2);
            model.eval();
            Perturb(model, "adapter_up", 0.5);
            var block = model.Encoder.Layers[0].output;
            var adapter = (BottleneckAdapter)block.Adapter!;
            using var _ = no_grad();
            var h = block.dense.forward(x);
            var input = parallel ? residual : h;
            var update = adapter.adapter_up.forward(nn.functional.relu(adapter.adapter_down.forward(input)))
                * (parallel ? 4.0 : 1.0);
            var expected = block.LayerNorm.forward(h + update + residual);
            Assert.IsLessThan(
                1e-5f, MaxDiff(block.forward(x, residual), expected), parallel ? "parallel" : "sequential");
        }
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        foreach (PeftMethodConfig config in new PeftMethodConfig[]
                 {
                     new BottleneckAdapterConfig(),
                     new ParallelAdapterConfig { Placement = ParallelAdapterPlacement.Both },
                 })
        {
            var (expected, actual, saved) = RoundTrip(config);
            CollectionAssert.AreEqual(expected, actual, config.MethodName);
            Assert.IsTrue(
                saved.All(n => n.StartsWith("classifier.") || n.Contains(".adapter.adapter_")),
                string.Join(", ", saved));
        }
    }

    [TestMethod]
    public void BadOptionsNameTheOptionAndOptionsRoundTrip()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new BottleneckAdapterConfig { ReductionFactor = 0 }.Validate());
        StringAssert.Contains(e.Message, "ReductionFactor");
        var s = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new ParallelAdapterConfig { Scaling = 0 }.Validate());
        StringAssert.Contains(s.Message, "Scaling");
        var back = (ParallelAdapterConfig)PeftMethodConfig.FromJson(new ParallelAdapterConfig
        {
            Placement = ParallelAdapterPlacement.Both, Scaling = 2, NonLinearity = AdapterNonLinearity.Gelu,
        }.ToJson());
        Assert.AreEqual(ParallelAdapterPlacement.Both, back.Placement);
        Assert.AreEqual(2.0, back.Scaling);
        Assert.AreEqual(AdapterNonLinearity.Gelu, back.NonLinearity);
        var seq = (BottleneckAdapterConfig)PeftMethodConfig.FromJson(new BottleneckAdapterConfig
        {
            Placement = BottleneckAdapterPlacement.Pfeiffer, ReductionFactor = 8,
        }.ToJson());
        Assert.AreEqual(BottleneckAdapterPlacement.Pfeiffer, seq.Placement);
        Assert.AreEqual(8, seq.ReductionFactor);
    }

    [TestMethod]
    public void OnnxExportScoresLikeTheStageForEveryPlacementAndActivation() =>
        AdapterOnnxParityKit.AssertExportsScoreLikeTheStage(
            new BottleneckAdapterConfig
            {
                Placement = BottleneckAdapterPlacement.Pfeiffer, NonLinearity = AdapterNonLinearity.Gelu,
            },
            new BottleneckAdapterConfig { NonLinearity = AdapterNonLinearity.Tanh, ReductionFactor = 4 },
            new ParallelAdapterConfig
            {
                Placement = ParallelAdapterPlacement.Both, NonLinearity = AdapterNonLinearity.Swish, Scaling = 2,
            },
            new ParallelAdapterConfig { Placement = ParallelAdapterPlacement.Attention, Scaling = 1 });
}
