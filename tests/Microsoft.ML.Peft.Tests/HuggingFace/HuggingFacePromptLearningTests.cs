using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Methods.Prompt;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.Onnx;
using Microsoft.ML.Peft.Tests.Stages;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// Prefix and prompt tuning in peft's layout (<c>PeftLayout</c>; round trips are in
/// <see cref="HuggingFaceRoundTripTests"/>): the golden format
/// (keys and tensor names spelled out from peft's sources: <c>PromptLearningConfig</c> in peft/config.py, the tuners'
/// config.py, <c>get_peft_model_state_dict</c> in peft/utils/save_and_load.py), ONNX parity, and a hand-built peft
/// folder scored against <see cref="PeftReference"/>, a forward pass written here from transformers' and peft's code
/// (not the library's encoder), which is what proves the layout is peft's.
/// </summary>
[TestClass]
public sealed class HuggingFacePromptLearningTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("prompt-learning");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private static JsonObject Config(string folder) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "adapter_config.json")))!.AsObject();

    [TestMethod]
    public void PrefixAdapterHasPeftKeysAndTensorNames()
    {
        var (stage, _) = HfKit.Classifier(new MLContext(seed: 1),
            new PrefixTuningConfig { NumVirtualTokens = 3, PeftLayout = true }, _base, epochs: 1);
        string folder = Path.Combine(_root, "prefix-format");
        using (stage) stage.SavePretrained(folder);
        var c = Config(folder);
        string[] keys =
        [
            "auto_mapping", "base_model_name_or_path", "encoder_hidden_size", "inference_mode", "modules_to_save",
            "num_attention_heads", "num_layers", "num_transformer_submodules", "num_virtual_tokens", "peft_type",
            "prefix_projection", "revision", "task_type", "token_dim",
        ];
        CollectionAssert.AreEqual(keys, c.Select(kv => kv.Key).ToArray(), "keys, sorted as peft writes");
        Assert.AreEqual("PREFIX_TUNING", (string?)c["peft_type"]);
        Assert.AreEqual("SEQ_CLS", (string?)c["task_type"]);
        Assert.AreEqual(3, (int)c["num_virtual_tokens"]!);
        Assert.AreEqual(8, (int)c["token_dim"]!);
        Assert.AreEqual(1, (int)c["num_transformer_submodules"]!);
        Assert.AreEqual(2, (int)c["num_attention_heads"]!);
        Assert.AreEqual(2, (int)c["num_layers"]!);
        Assert.IsFalse((bool)c["prefix_projection"]!);
        // prompt_embeddings [P, layers · 2 · hidden]; the head under base_model. (no tuner between PeftModel and
        // BertForSequenceClassification for prompt learning).
        var shapes = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(
            new[] { "prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias" },
            shapes.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 3, 32 }, shapes["prompt_embeddings"]);
        CollectionAssert.AreEqual(new long[] { 2, 8 }, shapes["base_model.classifier.weight"]);
    }

    [TestMethod]
    public void PromptAdapterHasPeftKeysAndTensorNames()
    {
        var (stage, _) = HfKit.Classifier(new MLContext(seed: 1),
            new PromptTuningConfig { NumVirtualTokens = 4, PeftLayout = true }, _base, epochs: 1);
        string folder = Path.Combine(_root, "prompt-format");
        using (stage) stage.SavePretrained(folder);
        var c = Config(folder);
        string[] keys =
        [
            "auto_mapping", "base_model_name_or_path", "inference_mode", "modules_to_save", "num_attention_heads",
            "num_layers", "num_transformer_submodules", "num_virtual_tokens", "peft_type", "prompt_tuning_init",
            "prompt_tuning_init_text", "revision", "task_type", "token_dim", "tokenizer_kwargs",
            "tokenizer_name_or_path",
        ];
        CollectionAssert.AreEqual(keys, c.Select(kv => kv.Key).ToArray(), "keys, sorted as peft writes");
        Assert.AreEqual("PROMPT_TUNING", (string?)c["peft_type"]);
        Assert.AreEqual("RANDOM", (string?)c["prompt_tuning_init"]);
        Assert.AreEqual(4, (int)c["num_virtual_tokens"]!);
        var shapes = HfKit.TensorShapes(Path.Combine(folder, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(
            new[] { "prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias" },
            shapes.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 4, 8 }, shapes["prompt_embeddings"]);
    }

    [TestMethod]
    public void HandBuiltPeftPrefixAdapterScoresAsPeftComputes() =>
        HandBuilt("PREFIX_TUNING", tokens: 3, width: 2 * 2 * 8, """
            "encoder_hidden_size": 8, "prefix_projection": false, "init_weights": null
            """);

    [TestMethod]
    public void HandBuiltPeftPromptAdapterScoresAsPeftComputes() =>
        HandBuilt("PROMPT_TUNING", tokens: 4, width: 8, """
            "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": null, "tokenizer_kwargs": null,
            "tokenizer_name_or_path": null
            """);

    // A folder as peft 0.13's save_pretrained writes it for BertForSequenceClassification on the tiny base.
    private static void HandBuilt(string peftType, int tokens, int width, string ownKeys)
    {
        string folder = Path.Combine(_root, "hand-" + peftType);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), $$"""
            {"auto_mapping": null, "base_model_name_or_path": null, "inference_mode": true,
             "modules_to_save": ["classifier", "score"], "num_attention_heads": 2, "num_layers": 2,
             "num_transformer_submodules": 1, "num_virtual_tokens": {{tokens}}, "peft_type": "{{peftType}}",
             "revision": null, "task_type": "SEQ_CLS", "token_dim": 8, {{ownKeys}}}
            """);
        var prompt = HfKit.Random(tokens * width, seed: 3, scale: 1.0);
        var weight = HfKit.Random(16, seed: 4, scale: 2.0);
        float[] bias = [0.1f, -0.2f];
        HfKit.WriteTensors(Path.Combine(folder, "adapter_model.safetensors"), new()
        {
            ["prompt_embeddings"] = ([tokens, width], prompt),
            ["base_model.classifier.weight"] = ([2, 8], weight),
            ["base_model.classifier.bias"] = ([2], bias),
        });
        File.WriteAllText(Path.Combine(folder, "config.json"), """
            {"model_type": "bert", "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
            """);
        var ml = new MLContext(seed: 1);
        using var stage = ml.Peft().FromPretrained(folder, _base, HfKit.Exact());
        string[] texts = ["i love this movie", "we do not like this book a lot today", "hate", "they adore my car"];
        var data = ml.Data.LoadFromEnumerable(texts.Select(t => new PairRow { Sentence1 = t }));
        var scores = HfKit.Scores(stage, data);
        var encoder = new RowEncoder(stage.Tokenizer, stage.Saved.MaxSequenceLength, pair: false);
        var reference = new PeftReference(_base, weight, bias).WithPromptLearning(peftType, tokens, prompt);
        var expected = texts.Select(t => reference.Probabilities(encoder.Encode(t, null).InputIds)).ToArray();
        // Rows of different lengths are scored in one padded batch by the stage, alone by the reference.
        HfKit.AssertClose(expected, scores);
        Assert.IsTrue(scores.Any(r => Math.Abs(r[0] - scores[0][0]) > 1e-3), "scores must vary across rows");
    }

    [TestMethod]
    public void PeftLayoutExportsToOnnxAndScoresLikeTheStage()
    {
        var ml = new MLContext(seed: 1);
        foreach (var method in new Microsoft.ML.Peft.Methods.PeftMethodConfig[]
        {
            new PrefixTuningConfig { NumVirtualTokens = 3, PeftLayout = true },
            new PromptTuningConfig { NumVirtualTokens = 4, PeftLayout = true },
        })
        {
            var (stage, data) = OnnxParityKit.Classifier(ml, method, _base);
            using (stage)
                OnnxParityKit.AssertClose(OnnxParityKit.StageScores(stage, data),
                    OnnxParityKit.OnnxScores(OnnxParityKit.Export(stage), stage, data), 1e-4, method.MethodName);
            var (pairs, pairData) = OnnxParityKit.Classifier(ml, method, _base,
                Microsoft.ML.Peft.Modeling.PairEncoding.CrossEncoder, pair: true);
            using (pairs)
                OnnxParityKit.AssertClose(OnnxParityKit.StageScores(pairs, pairData),
                    OnnxParityKit.OnnxScores(OnnxParityKit.Export(pairs), pairs, pairData), 1e-4,
                    method.MethodName + " pairs");
        }
    }

    [TestMethod]
    public void VirtualTokensTakePositionsFromTheText()
    {
        // The tiny base has 64 positions: 5 virtual tokens leave 59 for the text.
        var (stage, _) = OnnxParityKit.Classifier(new MLContext(seed: 1),
            new PromptTuningConfig { NumVirtualTokens = 5, PeftLayout = true }, _base, epochs: 1, maxLength: 64);
        using (stage) Assert.AreEqual(59, stage.Saved.MaxSequenceLength);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => OnnxParityKit.Classifier(
            new MLContext(seed: 1), new PrefixTuningConfig { NumVirtualTokens = 60, PeftLayout = true }, _base,
            epochs: 1));
        StringAssert.Contains(e.Message, "NumVirtualTokens");
    }

    [TestMethod]
    public void WithoutPeftLayoutTheExportSaysHowToGetOne()
    {
        foreach (var method in new Microsoft.ML.Peft.Methods.PeftMethodConfig[]
            { new PrefixTuningConfig(), new PromptTuningConfig() })
        {
            var e = Assert.ThrowsExactly<NotSupportedException>(() => method.CreatePeftAdapterMapping());
            StringAssert.Contains(e.Message, "PeftLayout = true");
        }
    }
}
