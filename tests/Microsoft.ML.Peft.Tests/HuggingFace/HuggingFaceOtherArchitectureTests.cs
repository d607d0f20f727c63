using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.Stages;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// peft adapters of <c>RobertaForSequenceClassification</c> and <c>DistilBertForSequenceClassification</c>: folders
/// built here as peft writes them (backbone under <c>roberta.</c> / <c>distilbert.</c> with DistilBERT's module names,
/// the heads' own modules saved whole through <c>modules_to_save</c>), imported onto tiny RoBERTa- and
/// DistilBERT-shaped bases and scored against <see cref="PeftReference"/>; the ONNX engine scores them the same,
/// they save as zips, and a BERT adapter on a RoBERTa base is refused naming the tensor.
/// </summary>
[TestClass]
public sealed class HuggingFaceOtherArchitectureTests
{
    private static string _root = "";
    private static BaseModel _bert = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("architectures");
        _bert = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    // The tiny BERT's weights under another architecture: RoBERTa (positions from pad + 1, no pooler, as
    // RobertaForSequenceClassification builds it) or DistilBERT (no token types, no pooler).
    private static BaseModel Base(EncoderArchitecture architecture)
    {
        var config = architecture == EncoderArchitecture.Roberta
            ? _bert.Config with { Architecture = architecture }
            : _bert.Config with { Architecture = architecture, TypeVocabSize = 0 };
        var weights = _bert.LoadWeights()
            .Where(kv => !kv.Key.StartsWith("pooler.", StringComparison.Ordinal)
                && (architecture == EncoderArchitecture.Roberta || !kv.Key.Contains("token_type")))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        return BaseModel.FromWeights("tiny-" + architecture, _bert.Sha256, config, weights,
            File.ReadAllBytes(_bert.OriginVocabPath!), "vocab.txt", _bert.DoLowerCase, _bert.Origin);
    }

    private sealed record Built(string Folder, PeftReference Reference);

    private sealed class LabelledRow
    {
        public string Label { get; set; } = "";
        public string Sentence1 { get; set; } = "";
    }

    // A LoRA adapter (r 2, alpha 4 on query and value) with random A and B and a random head, as peft saves it.
    private static Built Adapter(EncoderArchitecture architecture, BaseModel baseModel, string name)
    {
        bool roberta = architecture == EncoderArchitecture.Roberta;
        string backbone = roberta ? "roberta" : "distilbert";
        var tensors = new Dictionary<string, (long[] Shape, float[] Data)>();
        var weight = HfKit.Random(16, seed: 40, scale: 2.0);
        float[] bias = [0.2f, -0.1f];
        var dense = HfKit.Random(64, seed: 41, scale: 0.5);
        var denseBias = HfKit.Random(8, seed: 42, scale: 0.1);
        var reference = new PeftReference(baseModel, weight, bias).WithHeadLayer(dense, denseBias);
        int seed = 50;
        foreach (int layer in new[] { 0, 1 })
            foreach (var (bert, own) in new[] { ("query", "q_lin"), ("value", "v_lin") })
            {
                string module = roberta
                    ? $"base_model.model.roberta.encoder.layer.{layer}.attention.self.{bert}"
                    : $"base_model.model.distilbert.transformer.layer.{layer}.attention.{own}";
                var a = HfKit.Random(16, seed++);
                var b = HfKit.Random(16, seed++, 1.0);
                tensors[module + ".lora_A.weight"] = ([2, 8], a);
                tensors[module + ".lora_B.weight"] = ([8, 2], b);
                reference.WithLora($"encoder.layer.{layer}.attention.self.{bert}", a, b, rank: 2, alpha: 4);
            }
        if (roberta)
        {
            tensors["base_model.model.classifier.dense.weight"] = ([8, 8], dense);
            tensors["base_model.model.classifier.dense.bias"] = ([8], denseBias);
            tensors["base_model.model.classifier.out_proj.weight"] = ([2, 8], weight);
            tensors["base_model.model.classifier.out_proj.bias"] = ([2], bias);
        }
        else
        {
            tensors["base_model.model.pre_classifier.weight"] = ([8, 8], dense);
            tensors["base_model.model.pre_classifier.bias"] = ([8], denseBias);
            tensors["base_model.model.classifier.weight"] = ([2, 8], weight);
            tensors["base_model.model.classifier.bias"] = ([2], bias);
        }
        var config = new JsonObject
        {
            ["base_model_name_or_path"] = null, ["bias"] = "none", ["fan_in_fan_out"] = false,
            ["inference_mode"] = true, ["init_lora_weights"] = true, ["lora_alpha"] = 4, ["lora_dropout"] = 0.1,
            ["modules_to_save"] = new JsonArray(roberta ? "classifier" : "pre_classifier", "classifier", "score"),
            ["peft_type"] = "LORA", ["r"] = 2, ["task_type"] = "SEQ_CLS",
            ["target_modules"] = roberta ? new JsonArray("query", "value") : new JsonArray("q_lin", "v_lin"),
            ["use_dora"] = false, ["use_rslora"] = false,
        };
        string folder = Path.Combine(_root, name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), config.ToJsonString());
        HfKit.WriteTensors(Path.Combine(folder, "adapter_model.safetensors"), tensors);
        File.WriteAllText(Path.Combine(folder, "config.json"), new JsonObject
        {
            ["model_type"] = backbone, ["id2label"] = new JsonObject { ["0"] = "neg", ["1"] = "pos" },
            ["label2id"] = new JsonObject { ["neg"] = 0, ["pos"] = 1 },
        }.ToJsonString());
        return new Built(folder, reference);
    }

    private static readonly string[] Texts =
        ["i love this movie", "we do not like this book a lot today", "hate", "they adore my car and more words"];

    private static void ScoresAsTransformersComputes(EncoderArchitecture architecture)
    {
        var baseModel = Base(architecture);
        var built = Adapter(architecture, baseModel, architecture.ToString());
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Texts.Select(t => new PairRow { Sentence1 = t }));
        foreach (var engine in new[] { ScoringEngine.TorchSharp, ScoringEngine.OnnxRuntime })
        {
            var options = HfKit.Exact();
            options.ScoringEngine = engine;
            using var stage = ml.Peft().FromPretrained(built.Folder, baseModel, options);
            Assert.AreEqual(Pooling.Cls, stage.Saved.Pooling);
            var encoder = new RowEncoder(stage.Tokenizer, stage.Saved.MaxSequenceLength, pair: false);
            var expected = Texts.Select(t => built.Reference.Probabilities(encoder.Encode(t, null).InputIds))
                .ToArray();
            var scores = HfKit.Scores(stage, data);
            HfKit.AssertClose(expected, scores, engine == ScoringEngine.TorchSharp ? 1e-5 : 1e-4);
            Assert.IsTrue(scores.Any(r => Math.Abs(r[0] - scores[0][0]) > 1e-3), "scores must vary across rows");
        }
    }

    [TestMethod]
    public void RobertaLoraAdapterScoresAsTransformersComputes() =>
        ScoresAsTransformersComputes(EncoderArchitecture.Roberta);

    [TestMethod]
    public void DistilBertLoraAdapterScoresAsTransformersComputes() =>
        ScoresAsTransformersComputes(EncoderArchitecture.DistilBert);

    [TestMethod]
    public void ImportedRobertaStageSavesAndLoadsAsAZip()
    {
        var baseModel = Base(EncoderArchitecture.Roberta);
        var built = Adapter(EncoderArchitecture.Roberta, baseModel, "roberta-zip");
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Texts.Select(t => new PairRow { Sentence1 = t }));
        using var stage = ml.Peft().FromPretrained(built.Folder, baseModel, HfKit.Exact());
        string zip = Path.Combine(_root, "roberta.zip");
        ml.Model.Save(stage, data.Schema, zip);
        var loaded = ml.Model.Load(zip, out _);
        HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(loaded, data));
        (loaded as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void TrainingContinuesFromADistilBertAdapter()
    {
        var baseModel = Base(EncoderArchitecture.DistilBert);
        var built = Adapter(EncoderArchitecture.DistilBert, baseModel, "distilbert-continue");
        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(StageTestData.Negation(48, 1).Select(r => new LabelledRow
            { Label = r.Label == "positive" ? "pos" : "neg", Sentence1 = r.Text! }));
        // Keys by value: neg, pos, the adapter's id2label order, so that the Score columns line up.
        var data = ml.Transforms.Conversion.MapValueToKey("Label",
                keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Fit(rows).Transform(rows);
        using var imported = ml.Peft().FromPretrained(built.Folder, baseModel, HfKit.Exact());
        using var still = ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            Sentence1ColumnName = "Sentence1", InitialAdapterFolder = built.Folder, BaseModel = baseModel,
            Epochs = 1, BatchSize = 16, MaxSequenceLength = 24, LearningRate = 1e-12, HeadLearningRate = 1e-12,
            WeightDecay = 0, Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp,
        }).Fit(data);
        Assert.AreEqual(HeadLayer.DenseRelu, still.Saved.HeadLayer);
        HfKit.AssertClose(HfKit.Scores(imported, data), HfKit.Scores(still, data));
    }

    [TestMethod]
    public void BertAdapterOnARobertaBaseIsRefusedNamingTheTensor()
    {
        var roberta = Base(EncoderArchitecture.Roberta);
        string folder = new HandBuiltAdapter(roberta.Name, loraB: true, classifierWeight: null)
            .WriteTo(Path.Combine(_root, "bert-on-roberta"));
        var e = Assert.ThrowsExactly<PeftModelFormatException>(() =>
            new MLContext().Peft().FromPretrained(folder, roberta, HfKit.Exact()));
        StringAssert.Contains(e.Message, "base_model.model.bert.encoder.layer.");
        StringAssert.Contains(e.Message, "Roberta");
    }
}
