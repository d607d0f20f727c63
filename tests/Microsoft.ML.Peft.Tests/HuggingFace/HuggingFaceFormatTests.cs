using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods.AdaLora;
using Microsoft.ML.Peft.Methods.Dora;
using Microsoft.ML.Peft.Methods.IA3;
using Microsoft.ML.Peft.Methods.Lora;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// Golden format: the exported keys and tensor names are the ones peft writes. Expected names are spelled out here
/// from peft's sources (peft/utils/save_and_load.py get_peft_model_state_dict: prefix base_model.model., adapter name
/// removed, modules_to_save saved under the module's own name, DoRA's magnitude without .weight; peft/config.py and
/// the tuners' config.py for the keys), never derived from the code under test.
/// </summary>
[TestClass]
public sealed class HuggingFaceFormatTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("format");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private static string Export(Microsoft.ML.Peft.Methods.PeftMethodConfig method, string name)
    {
        var (stage, _) = HfKit.Classifier(new MLContext(seed: 1), method, _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, name);
            stage.SavePretrained(folder);
            return folder;
        }
    }

    private static JsonObject Config(string folder, string file = "adapter_config.json") =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(folder, file)))!.AsObject();

    private static string[] Strings(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<string>()).ToArray();

    // The tiny base has 2 layers.
    private static IEnumerable<string> PerLayer(params string[] suffixes) =>
        from layer in new[] { 0, 1 }
        from suffix in suffixes
        select $"base_model.model.bert.encoder.layer.{layer}.{suffix}";

    private static readonly string[] Head = ["base_model.model.classifier.weight", "base_model.model.classifier.bias"];

    [TestMethod]
    public void LoraAdapterHasPeftKeysAndTensorNames()
    {
        string folder = Export(new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0.05 }, "lora");
        var c = Config(folder);
        string[] expectedKeys =
        [
            "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
            "init_lora_weights", "layers_pattern", "layers_to_transform", "lora_alpha", "lora_dropout",
            "modules_to_save", "peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
            "use_dora", "use_rslora",
        ];
        CollectionAssert.AreEqual(expectedKeys, c.Select(kv => kv.Key).ToArray(), "keys, sorted as peft writes");
        Assert.AreEqual("LORA", (string?)c["peft_type"]);
        Assert.AreEqual("SEQ_CLS", (string?)c["task_type"]);
        Assert.AreEqual(4, (int)c["r"]!);
        Assert.AreEqual(8.0, (double)c["lora_alpha"]!);
        Assert.AreEqual(0.05, (double)c["lora_dropout"]!, 1e-12);
        Assert.AreEqual("none", (string?)c["bias"]);
        Assert.IsFalse((bool)c["use_rslora"]!);
        Assert.IsFalse((bool)c["use_dora"]!);
        CollectionAssert.AreEqual(new[] { "query", "value" }, Strings(c["target_modules"]));
        CollectionAssert.AreEqual(new[] { "classifier" }, Strings(c["modules_to_save"]));
        Assert.AreEqual(_base.Name, (string?)c["base_model_name_or_path"]);

        var expected = PerLayer("attention.self.query.lora_A.weight", "attention.self.query.lora_B.weight",
            "attention.self.value.lora_A.weight", "attention.self.value.lora_B.weight").Concat(Head);
        var tensors = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(expected.ToArray(), tensors.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 4, 8 },
            tensors["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"]);
        CollectionAssert.AreEqual(new long[] { 8, 4 },
            tensors["base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"]);
        Assert.AreEqual("pt",
            SafeTensorsHeader(Path.Combine(folder, "adapter_model.safetensors")).GetValueOrDefault("format"));

        var model = Config(folder, "config.json");
        CollectionAssert.AreEqual(new[] { "BertForSequenceClassification" }, Strings(model["architectures"]));
        Assert.AreEqual("bert", (string?)model["model_type"]);
        Assert.AreEqual("single_label_classification", (string?)model["problem_type"]);
        // The label column was MapValueToKey over the floats 0 and 1.
        Assert.AreEqual("0", (string?)model["id2label"]!["0"]);
        Assert.AreEqual("1", (string?)model["id2label"]!["1"]);
        Assert.AreEqual(1, (int)model["label2id"]!["1"]!);
        Assert.AreEqual(8, (int)model["hidden_size"]!);
        Assert.IsTrue(File.Exists(Path.Combine(folder, "vocab.txt")), "tokenizer files go with the adapter");
    }

    private static Dictionary<string, string> SafeTensorsHeader(string path) =>
        Microsoft.ML.Peft.BaseModels.SafeTensors.ReadHeader(path).Metadata;

    [TestMethod]
    public void DoraMagnitudeIsSavedWithoutWeightSuffix()
    {
        string folder = Export(new DoraConfig { Rank = 2, TargetModules = ["query"], UseRsLora = true }, "dora");
        var c = Config(folder);
        Assert.IsTrue((bool)c["use_dora"]!);
        Assert.IsTrue((bool)c["use_rslora"]!);
        var expected = PerLayer("attention.self.query.lora_A.weight", "attention.self.query.lora_B.weight",
            "attention.self.query.lora_magnitude_vector").Concat(Head);
        var tensors = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(expected.ToArray(), tensors.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 8 },
            tensors["base_model.model.bert.encoder.layer.1.attention.self.query.lora_magnitude_vector"]);
    }

    [TestMethod]
    public void AdaLoraSavesSvdTripletsAtTheInitialRank()
    {
        string folder = Export(new AdaLoraConfig { InitialRank = 4, TargetRank = 2 }, "adalora");
        var c = Config(folder);
        Assert.AreEqual("ADALORA", (string?)c["peft_type"]);
        Assert.AreEqual(4, (int)c["init_r"]!);
        Assert.AreEqual(2, (int)c["target_r"]!);
        Assert.IsTrue((int)c["total_step"]! > 0, "peft's AdaLoraConfig refuses a missing total_step");
        Assert.IsNull(c["rank_pattern"]);
        var expected = PerLayer("attention.self.query.lora_A", "attention.self.query.lora_E",
            "attention.self.query.lora_B", "attention.self.value.lora_A", "attention.self.value.lora_E",
            "attention.self.value.lora_B").Concat(Head);
        var tensors = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(expected.ToArray(), tensors.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 4, 1 },
            tensors["base_model.model.bert.encoder.layer.0.attention.self.query.lora_E"]);
    }

    [TestMethod]
    public void IA3NamesExactModulesAndFeedforwardPlacement()
    {
        string folder = Export(new IA3Config(), "ia3");
        var c = Config(folder);
        Assert.AreEqual("IA3", (string?)c["peft_type"]);
        string[] modules = ["attention.self.key", "attention.self.value", "output.dense"];
        CollectionAssert.AreEquivalent(
            (from l in new[] { 0, 1 } from m in modules select $"bert.encoder.layer.{l}.{m}").ToArray(),
            Strings(c["target_modules"]));
        CollectionAssert.AreEquivalent(
            new[] { "bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense" },
            Strings(c["feedforward_modules"]));
        var tensors = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(PerLayer("attention.self.key.ia3_l", "attention.self.value.ia3_l",
            "output.dense.ia3_l").Concat(Head).ToArray(), tensors.Keys.ToArray());
        // peft/tuners/ia3/layer.py: [out, 1] on outputs, [1, in] for feed-forward inputs (intermediate 16).
        CollectionAssert.AreEqual(new long[] { 8, 1 },
            tensors["base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l"]);
        CollectionAssert.AreEqual(new long[] { 1, 16 },
            tensors["base_model.model.bert.encoder.layer.0.output.dense.ia3_l"]);
    }

    [TestMethod]
    public void MergedFolderHasPlainBertForSequenceClassificationNames()
    {
        var (stage, _) = HfKit.Classifier(new MLContext(seed: 1), new LoraConfig { Rank = 2 }, _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "merged");
            stage.SaveMergedPretrained(folder);
            var tensors = HfKit.TensorShapes(Path.Combine(folder, "model.safetensors"));
            foreach (var name in new[]
            {
                "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                "bert.encoder.layer.1.attention.self.query.weight", "bert.encoder.layer.1.attention.output.dense.bias",
                "bert.encoder.layer.1.intermediate.dense.weight", "bert.encoder.layer.1.output.LayerNorm.bias",
                "bert.pooler.dense.weight", "classifier.weight", "classifier.bias",
            })
                Assert.IsTrue(tensors.ContainsKey(name), name);
            Assert.IsFalse(tensors.Keys.Any(k => k.Contains("lora_") || k.Contains("base_layer")));
            Assert.IsFalse(File.Exists(Path.Combine(folder, "adapter_config.json")));
        }
    }
}
