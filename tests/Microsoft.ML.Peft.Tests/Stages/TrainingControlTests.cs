using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>Stage options that control how training runs: a time limit and libtorch's thread count.</summary>
[TestClass]
[DoNotParallelize] // reads and sets libtorch's thread count
public sealed class TrainingControlTests
{
    private static (MLContext Ml, IDataView Train, IDataView Test) Data(int trainRows, int testRows)
    {
        var ml = new MLContext(1);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(trainRows, 1)));
        return (ml, toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(trainRows, 1))),
                toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(testRows, 2))));
    }

    private static PeftTextClassificationOptions Options() => new()
    {
        LabelColumnName = "Label", Sentence1ColumnName = "Text", BatchSize = 16, MaxSequenceLength = 32,
        LearningRate = 2e-3, LogEverySteps = 1,
    };

    [TestMethod]
    public void TimeLimitStopsTrainingKeepsTheModelAndDecaysTheRateByTheDeadline()
    {
        var (ml, train, test) = Data(64, 16);
        var rates = new List<double>();
        var options = Options();
        options.Epochs = 100_000;
        options.MaxTrainingTime = TimeSpan.FromSeconds(4);
        options.Progress = p => { if (p.ValidationMetric is null) rates.Add(p.LearningRate); };
        var model = ml.Peft().TextClassification(options).Fit(train);

        var report = model.TrainingReport!;
        Assert.IsTrue(report.StoppedAtTimeLimit);
        Assert.IsLessThan(100_000, report.EpochsRun);
        Assert.IsGreaterThanOrEqualTo(TimeSpan.FromSeconds(4), report.Duration);
        var scores = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        Assert.AreEqual(16, scores.Length);
        Assert.IsTrue(scores.All(s => s.All(float.IsFinite)));
        // The schedule follows the clock: it reaches its peak and is close to zero at the last step before the
        // deadline.
        Assert.IsGreaterThan(2, rates.Count);
        Assert.IsLessThanOrEqualTo(2e-3 + 1e-12, rates.Max());
        Assert.IsLessThan(0.5 * rates.Max(), rates[^1], $"last rate {rates[^1]:E2}, peak {rates.Max():E2}");
    }

    [TestMethod]
    public void BadTimeLimitAndThreadCountNameTheOption()
    {
        var (ml, train, _) = Data(8, 1);
        var o = Options();
        o.MaxTrainingTime = TimeSpan.Zero;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(o).Fit(train));
        StringAssert.Contains(e.Message, "MaxTrainingTime");
        o = Options();
        o.NumberOfThreads = 0;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(o).Fit(train));
        StringAssert.Contains(e.Message, "NumberOfThreads");
    }

    [TestMethod]
    public void NumberOfThreadsAppliesWhileTrainingAndScoringAndIsRestoredAndSaved()
    {
        var (ml, train, test) = Data(48, 24);
        int before = torch.get_num_threads();
        var seen = new List<int>();
        var options = Options();
        options.Epochs = 1;
        options.NumberOfThreads = 1;
        options.Progress = _ => seen.Add(torch.get_num_threads());
        var model = ml.Peft().TextClassification(options).Fit(train);
        Assert.IsNotEmpty(seen);
        Assert.IsTrue(seen.All(n => n == 1), string.Join(",", seen));
        Assert.AreEqual(before, torch.get_num_threads(), "the caller's thread count is restored");

        Assert.AreEqual(1, model.NumberOfThreads);
        var oneThread = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        Assert.AreEqual(before, torch.get_num_threads());
        model.NumberOfThreads = null;
        var defaultThreads = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        Assert.IsLessThan(1e-4,
            oneThread.Zip(defaultThreads, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.NumberOfThreads = 0);

        model.NumberOfThreads = 1;
        string path = Path.Combine(Path.GetTempPath(), $"peft-threads-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var loaded = (PeftTextTransformer)new MLContext(2).Model.Load(path, out _);
            Assert.AreEqual(1, loaded.NumberOfThreads);
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void AttentionDropoutOverridesTheBaseModelsValueForTraining()
    {
        var (ml, train, test) = Data(32, 8);
        static double[] Dropouts(PeftTextTransformer t) =>
            t.Model.modules().OfType<Microsoft.ML.Peft.Modeling.BertSelfAttention>().Select(a => a.AttentionDropout)
                .ToArray();
        var options = Options();
        options.Epochs = 1;
        var plain = ml.Peft().TextClassification(options).Fit(train);
        Assert.IsTrue(Dropouts(plain)
            .All(d => d == Microsoft.ML.Peft.BaseModels.BaseModel.Default.Config.AttentionDropoutProb));

        options.AttentionDropout = 0;
        var noDropout = ml.Peft().TextClassification(options).Fit(train);
        Assert.AreEqual(6, Dropouts(noDropout).Length);
        Assert.IsTrue(Dropouts(noDropout).All(d => d == 0));
        Assert.IsTrue(noDropout.Transform(test).GetColumn<float[]>("Score").All(s => s.All(float.IsFinite)));

        options.AttentionDropout = 1;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(options)
            .Fit(train));
        StringAssert.Contains(e.Message, "AttentionDropout");
    }
}
