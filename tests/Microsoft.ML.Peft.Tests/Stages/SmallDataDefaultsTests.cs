using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>
/// A few hundred rows at the stage's defaults (issue 21): the plan follows the data size, is logged and reported, beats
/// the majority class and bag-of-words on a six-class task, and never overrides an option the user set.
/// </summary>
[TestClass]
public sealed class SmallDataDefaultsTests
{
    private static MLContext _ml = null!;
    private static IDataView _train = null!;
    private static IDataView _test = null!;
    private static PeftTextTransformer _stage = null!;
    private static readonly List<string> Messages = [];

    [ClassInitialize]
    public static void TrainAtDefaults(TestContext _)
    {
        _ml = new MLContext(seed: 1);
        // Through reflection: the publicized ML.NET reference makes 'ml.Log' ambiguous at compile time.
        typeof(MLContext).GetEvent("Log")!.AddEventHandler(_ml,
            new EventHandler<LoggingEventArgs>((_, e) => { lock (Messages) Messages.Add(e.Message); }));
        var toKey = _ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(_ml, StageTestData.SixTopics(300, seed: 1, unseenWords: false)));
        _train = toKey.Transform(StageTestData.Load(_ml, StageTestData.SixTopics(300, seed: 1, unseenWords: false)));
        _test = toKey.Transform(StageTestData.Load(_ml, StageTestData.SixTopics(300, seed: 2, unseenWords: true)));
        _stage = _ml.Peft().LoraTextClassification(labelColumnName: "Label", sentence1ColumnName: "Text").Fit(_train);
    }

    [ClassCleanup]
    public static void Cleanup() => _stage?.Dispose();

    [TestMethod]
    public void DefaultsBeatTheMajorityClassAndBagOfWordsOnSixClasses()
    {
        var metrics = _ml.MulticlassClassification.Evaluate(_stage.Transform(_test));
        var bagOfWords = _ml.Transforms.Text.FeaturizeText("Features", "Text")
            .Append(_ml.MulticlassClassification.Trainers.SdcaMaximumEntropy())
            .Fit(_train);
        var baseline = _ml.MulticlassClassification.Evaluate(bagOfWords.Transform(_test));
        Console.WriteLine($"defaults {metrics.MicroAccuracy:F3}, FeaturizeText + SDCA {baseline.MicroAccuracy:F3}; "
            + $"plan: {_stage.TrainingReport!.Plan}");
        Assert.IsGreaterThan(1 / 6.0 + 0.5, metrics.MicroAccuracy, "majority class is 1/6");
        Assert.IsGreaterThan(baseline.MicroAccuracy + 0.3, metrics.MicroAccuracy);
    }

    [TestMethod]
    public void DefaultsDoNotStarveAManyClassHead()
    {
        // 24 classes with 20 rows each: the head has 24 × 385 weights to learn from 480 rows.
        var toKey = _ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(_ml, StageTestData.TwentyFourClasses(480, seed: 1, unseenWords: false)));
        var train = toKey.Transform(
            StageTestData.Load(_ml, StageTestData.TwentyFourClasses(480, 1, unseenWords: false)));
        var test = toKey.Transform(StageTestData.Load(_ml, StageTestData.TwentyFourClasses(240, 2, unseenWords: true)));
        using var stage = _ml.Peft().LoraTextClassification(labelColumnName: "Label", sentence1ColumnName: "Text")
            .Fit(train);
        var metrics = _ml.MulticlassClassification.Evaluate(stage.Transform(test));
        var bagOfWords = _ml.Transforms.Text.FeaturizeText("Features", "Text")
            .Append(_ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()).Fit(train);
        var baseline = _ml.MulticlassClassification.Evaluate(bagOfWords.Transform(test));
        Console.WriteLine($"24 classes: defaults {metrics.MicroAccuracy:F3}, "
            + $"FeaturizeText + SDCA {baseline.MicroAccuracy:F3}; "
            + $"plan: {stage.TrainingReport!.Plan}");
        Assert.IsGreaterThan(0.6, metrics.MicroAccuracy, "majority class is 1/24");
        Assert.IsGreaterThan(baseline.MicroAccuracy + 0.2, metrics.MicroAccuracy);
    }

    [TestMethod]
    public void ThePlanFollowsTheDataSizeAndIsLoggedAndReported()
    {
        var report = _stage.TrainingReport!;
        var plan = report.Plan!;
        // 300 balanced rows of six classes: 50 × 0.15 = 7.5, rounded to 8 held out per class.
        Assert.AreEqual(300, plan.Rows);
        Assert.AreEqual(48, plan.HeldOutRows);
        Assert.AreEqual(252, plan.TrainingRows);
        Assert.AreEqual(16, plan.BatchSize);
        Assert.AreEqual(16, plan.StepsPerEpoch);   // 252 rows in batches of 16
        Assert.AreEqual(19, plan.Epochs);          // ⌈300 / 16⌉ for 300 steps
        Assert.AreEqual(5, plan.EarlyStoppingPatience);
        Assert.IsTrue(plan.BatchSizeChosen && plan.EpochsChosen && !plan.RefitOnAllRows);
        Assert.IsNotNull(report.BestValidationMetric);
        Assert.IsTrue(report.BestEpoch >= 1 && report.BestEpoch <= report.EpochsRun && report.EpochsRun <= 19);
        lock (Messages)
            Assert.IsTrue(
                Messages.Any(l =>
                    l.Contains("Training plan: 300 rows (48 held out for validation", StringComparison.Ordinal)
                    && l.Contains("19 epochs × 16 steps of 16 = 304 optimizer steps", StringComparison.Ordinal)),
                "the plan is logged");
    }

    [TestMethod]
    public void ExplicitOptionsAreNeverOverridden()
    {
        var options = new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 2, BatchSize = 8, MaxSequenceLength = 32,
        };
        int lastTotal = 0;
        options.Progress = p => lastTotal = p.TotalSteps;
        using var stage = _ml.Peft().TextClassification(options).Fit(_train);
        var plan = stage.TrainingReport!.Plan!;
        Assert.AreEqual((300, 0, 8, 38, 2),
            (plan.TrainingRows, plan.HeldOutRows, plan.BatchSize, plan.StepsPerEpoch, plan.Epochs));
        Assert.IsFalse(plan.BatchSizeChosen || plan.EpochsChosen);
        Assert.AreEqual(2, stage.TrainingReport.EpochsRun);
        Assert.AreEqual(76, lastTotal);
        Assert.IsNull(stage.TrainingReport.BestValidationMetric);
        Assert.AreEqual(2, options.Epochs);
        Assert.AreEqual(8, options.BatchSize);

        // Epochs left to the stage, but no held-out rows: ValidationFraction = 0 is kept too.
        var noHoldOut = new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", ValidationFraction = 0, BatchSize = 32,
            MaxSequenceLength = 32, MaxTrainingTime = TimeSpan.FromSeconds(1),
        };
        using var second = _ml.Peft().TextClassification(noHoldOut).Fit(_train);
        var secondPlan = second.TrainingReport!.Plan!;
        Assert.AreEqual((0, 300, 32, 10, 30), (secondPlan.HeldOutRows, secondPlan.TrainingRows, secondPlan.BatchSize,
            secondPlan.StepsPerEpoch, secondPlan.Epochs));
        Assert.IsNull(noHoldOut.Epochs, "Fit never writes into the options");
    }

    [TestMethod]
    public void TheHeadLearnsAtItsOwnRateWhenTheMethodRateIsTiny()
    {
        // A topic task the frozen encoder already separates: only the head has to learn it.
        var rows = StageTestData.SixTopics(120, seed: 3, unseenWords: false);
        var data = _ml.Transforms.Conversion.MapValueToKey("Label").Fit(StageTestData.Load(_ml, rows))
            .Transform(StageTestData.Load(_ml, rows));
        double Accuracy(double? headRate)
        {
            using var stage = _ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 4, BatchSize = 16,
                MaxSequenceLength = 32, LearningRate = 1e-7, HeadLearningRate = headRate, Method = new LoraConfig(),
            }).Fit(data);
            return _ml.MulticlassClassification.Evaluate(stage.Transform(data)).MicroAccuracy;
        }
        double defaultHead = Accuracy(null), starvedHead = Accuracy(1e-7);
        Console.WriteLine($"head at its default rate {defaultHead:F3}; head at the method's 1e-7 {starvedHead:F3}");
        Assert.IsGreaterThan(0.9, defaultHead);
        Assert.IsLessThan(0.6, starvedHead);
    }
}
