using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Dora;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.ProPetl;
using Microsoft.ML.Peft.Methods.QLora;
using Microsoft.ML.Peft.Methods.UniPelt;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class LoraTests
{
    private static BertModel Encoder(int seed, EncoderConfig? config = null)
    {
        torch.manual_seed(seed);
        return new BertModel(config ?? BertModelTests.Tiny());
    }

    [TestMethod]
    public void LowRankLayersKeepPeftsParameterNamesInOrder()
    {
        // The names are saved in model zips and read by peft: the shared LoraBranch must not add a prefix to them.
        const string Query = "bert.encoder.layer.0.attention.self.query.";
        var expected = new (PeftMethodConfig Method, string[] Names)[]
        {
            (new LoraConfig(), ["base_layer.weight", "base_layer.bias", "lora_A.weight", "lora_B.weight"]),
            (new QLoraConfig(), ["base_layer.bias", "lora_A.weight", "lora_B.weight"]),
            (new DoraConfig(),
                ["base_layer.weight", "base_layer.bias", "lora_A.weight", "lora_B.weight",
                    "lora_magnitude_vector.weight"]),
            (new UniPeltConfig(),
                ["base_layer.weight", "base_layer.bias", "lora_A.weight", "lora_B.weight",
                    "lora_gate.weight", "lora_gate.bias"]),
            (new ProPetlConfig { Prototype = ProPetlPrototype.Lora },
                ["base_layer.weight", "base_layer.bias", "propetl_mask.lora_A_mask", "propetl_mask.lora_B_mask"]),
        };
        foreach (var (method, names) in expected)
        {
            using var model = PeftModel.Create(Encoder(7), method, 2);
            var actual = model.named_parameters().Select(p => p.name)
                .Where(n => n.StartsWith(Query, StringComparison.Ordinal));
            CollectionAssert.AreEqual(names.Select(n => Query + n).ToList(), actual.ToList(), method.MethodName);
        }
        using var propetl = PeftModel.Create(Encoder(7), new ProPetlConfig { Prototype = ProPetlPrototype.Lora }, 2);
        CollectionAssert.AreEqual(
            new[] { "propetl_prototype.query.lora_A.weight", "propetl_prototype.query.lora_B.weight" },
            propetl.named_parameters().Select(p => p.name)
                .Where(n => n.StartsWith("propetl_prototype.query.", StringComparison.Ordinal)).ToList());
    }

    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        // MiniLM-L6: 6 layers, hidden 384; r = 8 on query and value: 6 × 2 × (384·8 + 8·384) = 73,728;
        // head 384·2 + 2.
        var miniLm = new EncoderConfig { HiddenSize = 384, NumHiddenLayers = 6, NumAttentionHeads = 12,
            IntermediateSize = 1536, VocabSize = 30522 };
        using var model = PeftModel.Create(Encoder(3, miniLm), new LoraConfig(), 2);
        var (trainable, total) = model.CountParameters();
        Assert.AreEqual(6L * 2 * (384 * 8 + 8 * 384) + 384 * 2 + 2, trainable);
        // all-MiniLM-L6-v2 has 22,713,216 weights with its pooler, 22,565,376 without (embeddings 11,918,592 + 6 ×
        // 1,774,464).
        Assert.AreEqual(22_565_376L + 73_728 + 770, total);
    }

    [TestMethod]
    public void BiasOptionsChooseWhichBiasesTrain()
    {
        using var all = PeftModel.Create(Encoder(4), new LoraConfig { Bias = LoraBias.All }, 2);
        using var loraOnly = PeftModel.Create(Encoder(4), new LoraConfig { Bias = LoraBias.LoraOnly }, 2);
        int Biases(PeftModel m) => m.TrainableParameters().Count(p => p.Name.EndsWith(".bias")
            && !p.Name.StartsWith("classifier"));
        // Tiny: 2 layers × (q,k,v,o,inter,out dense + 2 LayerNorm) = 16 biases + embeddings LayerNorm = 17.
        Assert.AreEqual(17, Biases(all));
        Assert.AreEqual(4, Biases(loraOnly)); // query and value in 2 layers
    }

    [TestMethod]
    public void BadOptionsNameTheOption()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LoraConfig { Rank = 0 }.Validate());
        StringAssert.Contains(e.Message, "Rank");
        var t = Assert.ThrowsExactly<ArgumentException>(() => PeftModel.Create(Encoder(5),
            new LoraConfig { TargetModules = ["qurey"] }, 2));
        StringAssert.Contains(t.Message, "qurey");
        var p = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LoraConfig {
            TargetModulesPattern = "(" }.Validate());
        StringAssert.Contains(p.Message, "TargetModulesPattern");
    }

    [TestMethod]
    public void PatternAndDistilBertAliasesResolve()
    {
        using var m1 = PeftModel.Create(Encoder(6),
            new LoraConfig { TargetModulesPattern = @"encoder\.layer\.1\.attention\.self\.(query|key)" }, 2);
        Assert.AreEqual(2, ModuleSurgery.NamedModules(m1).Count(m => m.Module is LoraLinear));
        using var m2 = PeftModel.Create(Encoder(6), new LoraConfig { TargetModules = ["q_lin", "lin1"] }, 2);
        var paths = ModuleSurgery.NamedModules(m2).Where(m => m.Module is LoraLinear).Select(m => m.Path).ToList();
        Assert.HasCount(4, paths);
        Assert.Contains("bert.encoder.layer.0.intermediate.dense", paths);
    }

    [TestMethod]
    public void OptionsRoundTripThroughJson()
    {
        var c = new LoraConfig { Rank = 4, Alpha = 32, UseRsLora = true, Bias = LoraBias.LoraOnly,
            TargetModules = ["query"] };
        var back = (LoraConfig)PeftMethodConfig.FromJson(c.ToJson());
        Assert.AreEqual(4, back.Rank);
        Assert.AreEqual(32.0, back.Alpha);
        Assert.IsTrue(back.UseRsLora);
        Assert.AreEqual(LoraBias.LoraOnly, back.Bias);
        CollectionAssert.AreEqual(new[] { "query" }, back.TargetModules);
        Assert.AreEqual(32 / Math.Sqrt(4), back.Scaling, 1e-12);
    }
}
