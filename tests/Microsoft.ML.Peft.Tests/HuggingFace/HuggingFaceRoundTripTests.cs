using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.AdaLora;
using Microsoft.ML.Peft.Methods.Dora;
using Microsoft.ML.Peft.Methods.Full;
using Microsoft.ML.Peft.Methods.IA3;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.Methods.Prompt;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.Onnx;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// Every exported method: SavePretrained (or SaveMergedPretrained) → FromPretrained gives a stage whose scores equal
/// the original's within 1e-5, on rows of different lengths.
/// </summary>
[TestClass]
public sealed class HuggingFaceRoundTripTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("roundtrip");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private static void RoundTrip(PeftMethodConfig method, string name)
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, method, _base);
        using (stage)
        {
            string folder = Path.Combine(_root, name);
            stage.SavePretrained(folder);
            using var imported = ml.Peft().FromPretrained(folder, _base, HfKit.Exact());
            Assert.AreEqual(0, imported.TrainingReport?.EpochsRun ?? 0);
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(imported, data));
            Assert.AreEqual(method.MethodName, imported.Method.MethodName);
        }
    }

    [TestMethod]
    public void LoraRoundTrips() => RoundTrip(new LoraConfig { Rank = 4, Alpha = 8 }, "lora");

    [TestMethod]
    public void RsLoraWithTrainedBiasesRoundTrips() =>
        RoundTrip(new LoraConfig { Rank = 2, Alpha = 4, UseRsLora = true, Bias = LoraBias.All,
            TargetModules = [LowRankConfigBase.AllLinear] }, "rslora");

    [TestMethod]
    public void DoraRoundTrips() => RoundTrip(new DoraConfig { Rank = 2, TargetModules = ["query", "key"] }, "dora");

    [TestMethod]
    public void AdaLoraRoundTrips() =>
        RoundTrip(new AdaLoraConfig { InitialRank = 4, TargetRank = 2 }, "adalora");

    [TestMethod]
    public void IA3RoundTrips() => RoundTrip(new IA3Config(), "ia3");

    [TestMethod]
    public void PrefixTuningInPeftLayoutRoundTrips() =>
        RoundTrip(new PrefixTuningConfig { NumVirtualTokens = 3, PeftLayout = true }, "prefix");

    [TestMethod]
    public void ReparameterisedPrefixTuningRoundTripsFolded() =>
        RoundTrip(new PrefixTuningConfig { NumVirtualTokens = 2, PeftLayout = true, Reparameterize = true,
            ProjectionHiddenSize = 6 }, "prefix-mlp");

    [TestMethod]
    public void PromptTuningInPeftLayoutRoundTrips() =>
        RoundTrip(new PromptTuningConfig { NumVirtualTokens = 4, PeftLayout = true }, "prompt");

    [TestMethod]
    public void FullFineTuningRoundTripsAsATransformersFolder()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, new FullFineTuningConfig(), _base);
        using (stage)
        {
            string folder = Path.Combine(_root, "full");
            stage.SavePretrained(folder);
            Assert.IsFalse(File.Exists(Path.Combine(folder, "adapter_config.json")));
            Assert.IsTrue(File.Exists(Path.Combine(folder, "model.safetensors")));
            // A transformers folder is its own base.
            using var imported = ml.Peft().FromPretrained(folder, null, HfKit.Exact());
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(imported, data));
        }
    }

    [TestMethod]
    public void MergedLoraRoundTripsAsATransformersFolder()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, new LoraConfig { Rank = 4 }, _base);
        using (stage)
        {
            string folder = Path.Combine(_root, "merged");
            stage.SaveMergedPretrained(folder);
            using var imported = ml.Peft().FromPretrained(folder, null, HfKit.Exact());
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(imported, data));
        }
    }

    [TestMethod]
    public void RegressionRoundTripsInLabelUnits()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = OnnxParityKit.Regressor(ml, new LoraConfig { Rank = 4 }, _base, epochs: 2);
        using (stage)
        {
            string folder = Path.Combine(_root, "regression");
            stage.SavePretrained(folder);
            StringAssert.Contains(File.ReadAllText(Path.Combine(folder, "config.json")), "\"regression\"");
            using var imported = ml.Peft().FromPretrained(folder, _base, HfKit.Exact());
            Assert.AreEqual(Microsoft.ML.Peft.Training.PeftTask.Regression, imported.Task);
            var expected = HfKit.Scores(stage, data);
            // The labels are 1 and 4: scores in label units, not standardised ones.
            Assert.IsTrue(expected.Average(r => r[0]) > 1.5);
            HfKit.AssertClose(expected, HfKit.Scores(imported, data));
        }
    }

    [TestMethod]
    public void ImportedStageSavesAndLoadsAsAZip()
    {
        var ml = new MLContext(seed: 1);
        var (stage, data) = HfKit.Classifier(ml, new LoraConfig { Rank = 4 }, _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "zip");
            stage.SavePretrained(folder);
            using var imported = ml.Peft().FromPretrained(folder, _base, HfKit.Exact());
            string zip = Path.Combine(_root, "imported.zip");
            ml.Model.Save(imported, data.Schema, zip);
            var loaded = ml.Model.Load(zip, out _);
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(loaded, data));
            (loaded as IDisposable)?.Dispose();
        }
    }
}
