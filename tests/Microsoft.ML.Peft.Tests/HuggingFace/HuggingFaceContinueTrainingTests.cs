using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.Stages;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary><see cref="PeftTextOptions.InitialAdapterFolder"/>: training starts from an exported adapter.</summary>
[TestClass]
public sealed class HuggingFaceContinueTrainingTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("continue");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private static PeftTextClassificationOptions Options(string folder, double learningRate) => new()
    {
        InitialAdapterFolder = folder, BaseModel = _base, Epochs = 1, BatchSize = 16, MaxSequenceLength = 24,
        LearningRate = learningRate, HeadLearningRate = learningRate, WeightDecay = 0,
        Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp,
    };

    [TestMethod]
    public void TrainingStartsFromTheAdapter()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, new LoraConfig { Rank = 4, Alpha = 8 }, _base);
        using (stage)
        {
            string folder = Path.Combine(_root, "adapter");
            stage.SavePretrained(folder);
            var expected = HfKit.Scores(stage, data);
            // A learning rate too small to move anything: the stage scores as the adapter it started from.
            using var still = ml.Peft().TextClassification(Options(folder, 1e-12)).Fit(data);
            HfKit.AssertClose(expected, HfKit.Scores(still, data));
            var method = (LoraConfig)still.Method;
            Assert.AreEqual(4, method.Rank);
            Assert.AreEqual(8.0, method.Alpha);
            // And with a real one it trains on from there.
            using var trained = ml.Peft().TextClassification(Options(folder, 5e-2)).Fit(data);
            var moved = HfKit.Scores(trained, data);
            Assert.IsTrue(expected.Zip(moved, (a, b) => Math.Abs(a[0] - b[0])).Max() > 1e-4);
        }
    }

    [TestMethod]
    public void PromptTuningStartsFromAPeftPromptAdapter()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml,
            new Microsoft.ML.Peft.Methods.Prompt.PromptTuningConfig { NumVirtualTokens = 3, PeftLayout = true }, _base);
        using (stage)
        {
            string folder = Path.Combine(_root, "prompt");
            stage.SavePretrained(folder);
            using var still = ml.Peft().TextClassification(Options(folder, 1e-12)).Fit(data);
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(still, data));
            var method = (Microsoft.ML.Peft.Methods.Prompt.PromptTuningConfig)still.Method;
            Assert.IsTrue(method.PeftLayout);
            Assert.AreEqual(3, method.NumVirtualTokens);
        }
    }

    [TestMethod]
    public void RegressionStartsFromTheAdapterInLabelUnits()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = Onnx.OnnxParityKit.Regressor(ml, new LoraConfig { Rank = 2 }, _base, epochs: 2);
        using (stage)
        {
            string folder = Path.Combine(_root, "regression");
            stage.SavePretrained(folder);
            // The new stage standardises its labels again; the adapter's head must be moved to those units.
            using var still = ml.Peft().TextRegression(new PeftTextRegressionOptions
            {
                InitialAdapterFolder = folder, BaseModel = _base, Epochs = 1, BatchSize = 16, MaxSequenceLength = 24,
                LearningRate = 1e-12, HeadLearningRate = 1e-12, WeightDecay = 0, Sentence1ColumnName = "Sentence1",
                Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp,
            }).Fit(data);
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(still, data));
        }
    }

    [TestMethod]
    public void LabelsThatDifferFromTheAdapterFailNamingBothSets()
    {
        var ml = new MLContext(seed: 1);
        var (stage, _) = HfKit.Classifier(ml, new LoraConfig { Rank = 2 }, _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "labels");
            stage.SavePretrained(folder);
            var data = ml.Data.LoadFromEnumerable(StageTestData.Negation(16, 1).Select(r => new PairRow
            {
                Label = r.Label == "positive" ? 7 : 5, Sentence1 = r.Text!,
            }));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
            var e = Assert.ThrowsExactly<ArgumentException>(() =>
                ml.Peft().TextClassification(Options(folder, 1e-3)).Fit(keyed));
            StringAssert.Contains(e.Message, "(0, 1)");
            StringAssert.Contains(e.Message, "(5, 7)");
            StringAssert.Contains(e.Message, "InitialAdapterFolder");
        }
    }

    [TestMethod]
    public void AnotherMethodThanTheAdaptersIsRefused()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, new LoraConfig { Rank = 2 }, _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "method");
            stage.SavePretrained(folder);
            var options = Options(folder, 1e-3);
            options.Method = new Microsoft.ML.Peft.Methods.IA3.IA3Config();
            var e = Assert.ThrowsExactly<ArgumentException>(() =>
                ml.Peft().TextClassification(options).Fit(data));
            StringAssert.Contains(e.Message, "Method");
        }
    }
}
