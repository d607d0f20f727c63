using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.MLNet;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;

namespace Microsoft.ML.Peft.Tests.Onnx;

/// <summary>
/// The ONNX Runtime engine inside the stage: same columns and scores as the TorchSharp engine, saved with the model,
/// switchable on a loaded stage, and a saved stage scores in a process that never maps libtorch.
/// </summary>
[TestClass]
public sealed class OnnxEngineTests
{
    [TestMethod]
    public void TheOnnxEngineScoresLikeTheTorchEngineAndIsSavedWithTheModel()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path));
        Assert.AreEqual(ScoringEngine.TorchSharp, stage.ActiveScoringEngine);
        var torch = StageScores(stage, data);
        stage.ScoringEngine = ScoringEngine.OnnxRuntime;
        Assert.AreEqual(ScoringEngine.OnnxRuntime, stage.ActiveScoringEngine);
        Assert.AreEqual("Float32", stage.ScoringPrecision);
        AssertClose(torch, StageScores(stage, data), 1e-4, "ONNX Runtime engine");

        string zip = Path.Combine(temp.Path, "ort.zip");
        ml.Model.Save(stage, data.Schema, zip);
        var loaded = (PeftTextTransformer)new MLContext(2).Model.Load(zip, out _);
        Assert.AreEqual(ScoringEngine.OnnxRuntime, loaded.ScoringEngine);
        Assert.AreEqual(ScoringEngine.OnnxRuntime, loaded.ActiveScoringEngine);
        AssertClose(torch, StageScores(loaded, data), 1e-4, "loaded ONNX Runtime engine");
        loaded.ScoringEngine = ScoringEngine.TorchSharp;
        Assert.AreEqual(ScoringEngine.TorchSharp, loaded.ActiveScoringEngine);
        AssertClose(torch, StageScores(loaded, data), 1e-5, "loaded stage switched back to TorchSharp");
    }

    [TestMethod]
    public void AutoPicksOnnxRuntimeForFloat32AndTorchSharpForBf16()
    {
        Assert.AreEqual(ScoringEngine.OnnxRuntime, Inference.EngineChoice.Choose(scoresInBf16: false));
        Assert.AreEqual(ScoringEngine.TorchSharp, Inference.EngineChoice.Choose(scoresInBf16: true));
    }

    [TestMethod]
    public void AMissingNativeRuntimeIsToldApartFromOtherFailures()
    {
        Assert.IsTrue(Inference.EngineChoice.IsRuntimeMissing(new DllNotFoundException("onnxruntime")));
        Assert.IsTrue(Inference.EngineChoice.IsRuntimeMissing(
            new TypeInitializationException("OrtEnv", new DllNotFoundException("onnxruntime"))));
        Assert.IsFalse(Inference.EngineChoice.IsRuntimeMissing(new InvalidOperationException("bad graph")));
        Assert.IsFalse(Inference.EngineChoice.IsRuntimeMissing(
            new TypeInitializationException("X", new InvalidOperationException("other"))));
    }

    [TestMethod]
    public void ChangingThreadsRebuildsTheOnnxSessionAndKeepsScores()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Regressor(ml, new LoraConfig(), TinyBase(temp.Path));
        stage.ScoringEngine = ScoringEngine.OnnxRuntime;
        var before = StageScores(stage, data);
        stage.NumberOfThreads = 1;
        Assert.AreEqual(ScoringEngine.OnnxRuntime, stage.ActiveScoringEngine);
        AssertClose(before, StageScores(stage, data), 1e-6, "after NumberOfThreads = 1");
    }

    [TestMethod]
    public void ASavedOnnxRuntimeStageScoresInAProcessWithoutLibtorch()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path));
        var expected = StageScores(stage, data);
        stage.ScoringEngine = ScoringEngine.OnnxRuntime;
        // The probe reads text columns only: save with the one input the stage reads.
        var texts = data.GetColumn<string>("Sentence1").ToArray();
        var schema = ml.Data.LoadFromEnumerable(texts.Select(t => new TextOnly { Sentence1 = t })).Schema;
        string zip = Path.Combine(temp.Path, "model.zip");
        ml.Model.Save(stage, schema, zip);
        string tsv = Path.Combine(temp.Path, "rows.tsv");
        File.WriteAllLines(tsv, texts);

        var (lines, report) = RunProbe(zip, tsv, "--native-report");
        Assert.AreEqual("none", report["#libtorch"], "the probe mapped libtorch while scoring with ONNX Runtime");
        Assert.IsGreaterThan(0L, long.Parse(report["#peak-rss-kb"], CultureInfo.InvariantCulture));
        var actual = lines.Select(l => l.Split('\t')[0].Split(' ')
            .Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        AssertClose(expected, actual, 1e-4, "child process (ONNX Runtime) against the TorchSharp engine");

        // The control: the same zip switched to TorchSharp does map libtorch, so the check above can fail.
        var loaded = (PeftTextTransformer)new MLContext(1).Model.Load(zip, out _);
        loaded.ScoringEngine = ScoringEngine.TorchSharp;
        string torchZip = Path.Combine(temp.Path, "torch.zip");
        ml.Model.Save(loaded, schema, torchZip);
        var (_, torchReport) = RunProbe(torchZip, tsv, "--native-report");
        Assert.AreNotEqual("none", torchReport["#libtorch"]);
    }

    private sealed class TextOnly
    {
        public string Sentence1 { get; set; } = "";
    }

    private static (List<string> Rows, Dictionary<string, string> Report) RunProbe(string zip, string tsv,
        string flag)
    {
        var lines = PeftTransformerBaseTests.RunProbe(flag, zip, tsv, "Score");
        var report = lines.Where(l => l.StartsWith('#')).Select(l => l.Split(' ', 2))
            .ToDictionary(p => p[0], p => p[1]);
        return (lines.Where(l => !l.StartsWith('#')).ToList(), report);
    }
}
