using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.IA3;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.PartialMethodsTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class IA3Tests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        using var model = PeftModel.Create(Encoder(3, MiniLm), new IA3Config(), 2);
        // Keys and values (384 each) and the FFN's inner activations (1536), in 6 layers: 13,824; plus the head.
        Assert.AreEqual(6L * (384 + 384 + 1536) + MiniLmHead, model.CountParameters().Trainable);
        var shapes = model.TrainableParameters().Where(p => p.Name.EndsWith(".ia3_l")).ToDictionary(p => p.Name,
            p => p.Parameter.shape);
        Assert.HasCount(18, shapes);
        CollectionAssert.AreEqual(new long[] { 384, 1 }, shapes["bert.encoder.layer.0.attention.self.key.ia3_l"]);
        CollectionAssert.AreEqual(new long[] { 384, 1 }, shapes["bert.encoder.layer.5.attention.self.value.ia3_l"]);
        CollectionAssert.AreEqual(new long[] { 1, 1536 }, shapes["bert.encoder.layer.3.output.dense.ia3_l"]);
        Assert.IsFalse(shapes.Keys.Any(k => k.Contains("attention.output")),
            "output.dense must not catch attention.output.dense");
    }

    [TestMethod]
    public void MergeRefusesAVectorWithAZero()
    {
        var config = new IA3Config();
        using var model = PeftModel.Create(Encoder(2), config, 3);
        using var before = model.named_parameters().First(p =>
            p.name.EndsWith("key.base_layer.weight")).parameter.detach().clone();
        using (no_grad()) model.named_parameters().First(p => p.name.EndsWith("key.ia3_l")).parameter[0, 0] = 0f;
        Assert.IsFalse(config.Merge(model));
        Assert.IsFalse(ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<IA3Linear>().Any(l => l.Merged));
        Assert.IsTrue(before.allclose(model.named_parameters().First(p =>
            p.name.EndsWith("key.base_layer.weight")).parameter, 0, 0));
    }

    [TestMethod]
    public void OptionsResolveAndValidate()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => PeftModel.Create(Encoder(5),
            new IA3Config { FeedforwardModules = ["intermediate.dense"] }, 2));
        StringAssert.Contains(e.Message, "FeedforwardModules");
        var v = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new IA3Config {
            TargetModules = [] }.Validate());
        StringAssert.Contains(v.Message, "TargetModules");
        // peft's placement for BERT (attention.output.dense as well) is still reachable by naming it.
        using var withAttentionOutput = PeftModel.Create(Encoder(5), new IA3Config
        {
            TargetModules = ["key", "value", "attention.output.dense", "output.dense"],
                FeedforwardModules = ["attention.output.dense", "output.dense"],
        }, 2);
        var layers = ModuleSurgery.NamedModules(withAttentionOutput).Where(m => m.Module is IA3Linear)
            .ToDictionary(m => m.Path, m => (IA3Linear)m.Module);
        Assert.HasCount(8, layers);
        Assert.IsTrue(layers["bert.encoder.layer.1.attention.output.dense"].IsFeedforward);
        Assert.IsFalse(layers["bert.encoder.layer.1.attention.self.key"].IsFeedforward);
        var back = (IA3Config)PeftMethodConfig.FromJson(new IA3Config { TargetModules = ["value"],
            FeedforwardModules = [] }.ToJson());
        CollectionAssert.AreEqual(new[] { "value" }, back.TargetModules);
        Assert.IsEmpty(back.FeedforwardModules);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (before, after, stage) = RoundTrip(new IA3Config());
        Assert.IsTrue(stage.IsMerged);
        CollectionAssert.AreEqual(before, after);
        Assert.IsTrue(stage.TrainedTensors().Keys.All(k => k.EndsWith(".ia3_l") || k.StartsWith("classifier.")));
    }
}
