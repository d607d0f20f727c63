using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class LoraTests
{
    private static (Tensor Ids, Tensor Mask) Batch()
    {
        var ids = tensor(new long[] { 2, 7, 9, 11, 3, 2, 5, 3, 0, 0 }, [2, 5]);
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 5]);
        return (ids, mask);
    }

    private static BertModel Encoder(int seed, EncoderConfig? config = null)
    {
        torch.manual_seed(seed);
        return new BertModel(config ?? BertModelTests.Tiny());
    }

    [TestMethod]
    public void UntrainedAdapterLeavesEncoderOutputUnchanged()
    {
        var (ids, mask) = Batch();
        using var plain = Encoder(1);
        plain.eval();
        using var expected = plain.forward(ids, mask, null);
        using var model = PeftModel.Create(Encoder(1), new LoraConfig { TargetModules = [LoraConfig.AllLinear] }, 3);
        model.eval();
        Assert.IsTrue(ModuleSurgery.NamedModules(model).Any(m => m.Module is LoraLinear), "LoRA layers were not attached");
        using var actual = model.Encoder.forward(ids, mask, null);
        Assert.AreEqual(0f, (actual - expected).abs().max().item<float>(), 1e-6f);
    }

    [TestMethod]
    public void MergeAndUnmergeGiveIdenticalLogits()
    {
        var (ids, mask) = Batch();
        var config = new LoraConfig { Rank = 4, Alpha = 8, TargetModules = ["query", "value", "intermediate.dense"] };
        using var model = PeftModel.Create(Encoder(2), config, 3);
        model.eval();
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("lora_B")) p.normal_(0, 0.5); // a trained-looking, non-zero update
        using var unmerged = model.forward(ids, mask, null);
        Assert.IsTrue(config.Merge(model));
        using var merged = model.forward(ids, mask, null);
        config.Unmerge(model);
        using var again = model.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, (merged - unmerged).abs().max().item<float>());
        Assert.IsLessThan(1e-5f, (again - unmerged).abs().max().item<float>());
        // The update must really matter, or the test above proves nothing.
        using var plainModel = PeftModel.Create(Encoder(2), new LoraConfig { Rank = 4, Alpha = 8, TargetModules = ["query", "value", "intermediate.dense"] }, 3);
        plainModel.eval();
        plainModel.classifier.weight!.detach().copy_(model.classifier.weight!);
        using var baseline = plainModel.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-3f, (baseline - unmerged).abs().max().item<float>());
    }

    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // MiniLM-L6: 6 layers, hidden 384; r = 8 on query and value: 6 × 2 × (384·8 + 8·384) = 73,728; head 384·2 + 2.
        var miniLm = new EncoderConfig { HiddenSize = 384, NumHiddenLayers = 6, NumAttentionHeads = 12, IntermediateSize = 1536, VocabSize = 30522 };
        using var model = PeftModel.Create(Encoder(3, miniLm), new LoraConfig(), 2);
        var (trainable, total) = model.CountParameters();
        Assert.AreEqual(6L * 2 * (384 * 8 + 8 * 384) + 384 * 2 + 2, trainable);
        // all-MiniLM-L6-v2 has 22,713,216 weights with its pooler, 22,565,376 without (embeddings 11,918,592 + 6 × 1,774,464).
        Assert.AreEqual(22_565_376L + 73_728 + 770, total);
    }

    [TestMethod]
    public void BiasOptionsChooseWhichBiasesTrain()
    {
        using var all = PeftModel.Create(Encoder(4), new LoraConfig { Bias = LoraBias.All }, 2);
        using var loraOnly = PeftModel.Create(Encoder(4), new LoraConfig { Bias = LoraBias.LoraOnly }, 2);
        int Biases(PeftModel m) => m.TrainableParameters().Count(p => p.Name.EndsWith(".bias") && !p.Name.StartsWith("classifier"));
        // Tiny: 2 layers × (q,k,v,o,inter,out dense + 2 LayerNorm) = 16 biases + embeddings LayerNorm = 17.
        Assert.AreEqual(17, Biases(all));
        Assert.AreEqual(4, Biases(loraOnly)); // query and value in 2 layers
    }

    [TestMethod]
    public void BadOptionsNameTheOption()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LoraConfig { Rank = 0 }.Validate());
        StringAssert.Contains(e.Message, "Rank");
        var t = Assert.ThrowsExactly<ArgumentException>(() => PeftModel.Create(Encoder(5), new LoraConfig { TargetModules = ["qurey"] }, 2));
        StringAssert.Contains(t.Message, "qurey");
        var p = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LoraConfig { TargetModulesPattern = "(" }.Validate());
        StringAssert.Contains(p.Message, "TargetModulesPattern");
    }

    [TestMethod]
    public void PatternAndDistilBertAliasesResolve()
    {
        using var m1 = PeftModel.Create(Encoder(6), new LoraConfig { TargetModulesPattern = @"encoder\.layer\.1\.attention\.self\.(query|key)" }, 2);
        Assert.AreEqual(2, ModuleSurgery.NamedModules(m1).Count(m => m.Module is LoraLinear));
        using var m2 = PeftModel.Create(Encoder(6), new LoraConfig { TargetModules = ["q_lin", "lin1"] }, 2);
        var paths = ModuleSurgery.NamedModules(m2).Where(m => m.Module is LoraLinear).Select(m => m.Path).ToList();
        Assert.HasCount(4, paths);
        Assert.Contains("bert.encoder.layer.0.intermediate.dense", paths);
    }

    [TestMethod]
    public void OptionsRoundTripThroughJson()
    {
        var c = new LoraConfig { Rank = 4, Alpha = 32, UseRsLora = true, Bias = LoraBias.LoraOnly, TargetModules = ["query"] };
        var back = (LoraConfig)PeftMethodConfig.FromJson(c.ToJson());
        Assert.AreEqual(4, back.Rank);
        Assert.AreEqual(32.0, back.Alpha);
        Assert.IsTrue(back.UseRsLora);
        Assert.AreEqual(LoraBias.LoraOnly, back.Bias);
        CollectionAssert.AreEqual(new[] { "query" }, back.TargetModules);
        Assert.AreEqual(32 / Math.Sqrt(4), back.Scaling, 1e-12);
    }
}
