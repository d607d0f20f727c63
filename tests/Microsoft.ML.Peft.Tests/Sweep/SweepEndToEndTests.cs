using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Sweep;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>Two real trials on the tiny ONNX base; the best model round-trips through save and load.</summary>
[TestClass]
public sealed class SweepEndToEndTests
{
    [TestMethod]
    public async Task TwoRealTrialsAndTheBestModelRoundTrips()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        var train = StageTestData.Load(ml, StageTestData.Negation(48, 1));
        var validation = StageTestData.Load(ml, StageTestData.Negation(24, 2));
        var space = new PeftSearchSpace()
            .SetShared(new RangeParameter("LearningRate", 5e-3, 2e-2, logScale: true))
            .SetShared(new ChoiceParameter("Epochs", 1))
            .SetShared(new ChoiceParameter("BatchSize", 16))
            .SetShared(new ChoiceParameter("MaxSequenceLength", 16))
            .AddMethod("lora", new ChoiceParameter("Rank", 4, 8))
            .AddMethod("bitfit");
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.MacroAccuracy)
            .SetSearchSpace(space).SetTuner(PeftTuner.Random(1)).SetMaxTrials(2).SetTrainingTimeInSeconds(120)
            .SetBaseModel(BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")))
            .SetCheckpointFolder(Path.Combine(temp.Path, "sweep"))
            .RunAsync();

        Assert.AreEqual(2, result.Trials.Count);
        Assert.IsTrue(result.Trials.All(t => t.Status == TrialStatus.Succeeded), string.Join("; ", result.Trials.Select(t => t.Error)));
        Assert.IsTrue(result.Trials.All(t => t.TrainableParameters > 0));
        Assert.IsNotNull(result.BestModel);
        Assert.IsTrue(File.Exists(Path.Combine(temp.Path, "sweep", "best-model.zip")));

        string zip = Path.Combine(temp.Path, "best.zip");
        ml.Model.Save(result.BestModel, train.Schema, zip);
        var expected = RowFormatter.Format(result.BestModel.Transform(validation), ["Score"]);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        CollectionAssert.AreEqual(expected, RowFormatter.Format(loaded.Transform(validation), ["Score"]));
    }
}
