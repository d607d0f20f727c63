using Microsoft.ML;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Onnx;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.Stages.LongText;

/// <summary>
/// A long document's score is its windows' scores pooled: each window is scored on its own as a short text (which
/// encodes to exactly that window), the expected pool is computed here from those scores, and the stage's score of
/// the whole document must match it, on both engines.
/// </summary>
[TestClass]
public sealed class LongTextPoolingTests
{
    private static readonly EmbeddedOnnx.TempFolder Temp = new();
    private static readonly Lazy<Microsoft.ML.Peft.BaseModels.BaseModel> Base =
        new(() => LongTextKit.TinyBase(Temp.Path));

    // 40 words, window room 14, stride 7: windows start at 0, 7, 14, 21 and 26 (see LongTextWindowTests).
    private static readonly string Document = LongTextKit.Words(0, 40);
    private static readonly string[] WindowTexts =
        [.. new[] { 0, 7, 14, 21, 26 }.Select(s => LongTextKit.Words(s, s + 14))];

    [ClassCleanup]
    public static void Cleanup() => Temp.Dispose();

    private static PeftTextTransformer Classifier(MLContext ml, WindowPooling pooling)
    {
        var o = LongTextKit.Options(Base.Value, LongTextStrategy.SlidingWindow);
        o.WindowPooling = pooling;
        o.Epochs = 2;
        return LongTextKit.Fit(ml, LongTextKit.EndDecided(48, seed: 1, length: 40), o);
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance, string what)
    {
        Assert.HasCount(expected.Length, actual, what);
        for (int c = 0; c < expected.Length; c++)
            Assert.AreEqual(expected[c], actual[c], tolerance, $"{what}, output {c}");
    }

    // The windows must disagree, or mean, max and the first window alone would all pass.
    private static void AssertWindowsDiffer(float[][] windows)
    {
        float spread = Enumerable.Range(0, windows[0].Length)
            .Max(c => windows.Max(w => w[c]) - windows.Min(w => w[c]));
        Assert.IsGreaterThan(1e-3f, spread, "the windows' scores must differ for the test to tell poolings apart");
    }

    [TestMethod]
    public void MeanPoolingAveragesTheWindowsClassProbabilitiesOnBothEngines()
    {
        var ml = new MLContext(1);
        using var stage = Classifier(ml, WindowPooling.Mean);
        var windows = LongTextKit.Scores(stage, ml, WindowTexts);
        AssertWindowsDiffer(windows);
        float[] expected = [.. Enumerable.Range(0, 2).Select(c => windows.Average(w => w[c]))];
        AssertClose(expected, LongTextKit.Scores(stage, ml, Document)[0], 1e-5f, "TorchSharp");
        stage.ScoringEngine = ScoringEngine.OnnxRuntime;
        AssertClose(expected, LongTextKit.Scores(stage, ml, Document)[0], 1e-4f, "ONNX Runtime");
    }

    [TestMethod]
    public void MaxPoolingTakesEachClassesLargestProbabilityAndRenormalises()
    {
        var ml = new MLContext(1);
        using var stage = Classifier(ml, WindowPooling.Max);
        var windows = LongTextKit.Scores(stage, ml, WindowTexts);
        AssertWindowsDiffer(windows);
        float[] max = [windows.Max(w => w[0]), windows.Max(w => w[1])];
        float[] expected = [max[0] / (max[0] + max[1]), max[1] / (max[0] + max[1])];
        AssertClose(expected, LongTextKit.Scores(stage, ml, Document)[0], 1e-5f, "TorchSharp");
        stage.ScoringEngine = ScoringEngine.OnnxRuntime;
        AssertClose(expected, LongTextKit.Scores(stage, ml, Document)[0], 1e-4f, "ONNX Runtime");
    }

    [TestMethod]
    public void RegressionPoolsTheWindowsValuesInLabelUnits()
    {
        var ml = new MLContext(1);
        torch.manual_seed(1);
        var rows = LongTextKit.EndDecided(48, seed: 1, length: 40).Select(r => new PairRow
        {
            Label = r.Label * 3 + 1, Sentence1 = r.Sentence1, Sentence2 = "",
        });
        foreach (var pooling in Enum.GetValues<WindowPooling>())
        {
            using var stage = ml.Peft().TextRegression(new PeftTextRegressionOptions
            {
                Sentence1ColumnName = "Sentence1", BaseModel = Base.Value, MaxSequenceLength = LongTextKit.MaxLength,
                LongTextStrategy = LongTextStrategy.SlidingWindow, WindowPooling = pooling, Epochs = 2, BatchSize = 16,
                LearningRate = 1e-2, Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp,
                ValidationFraction = 0,
            }).Fit(ml.Data.LoadFromEnumerable(rows.ToList()));
            var windows = LongTextKit.Scores(stage, ml, WindowTexts);
            AssertWindowsDiffer(windows);
            float expected = pooling == WindowPooling.Mean ? windows.Average(w => w[0]) : windows.Max(w => w[0]);
            AssertClose([expected], LongTextKit.Scores(stage, ml, Document)[0], 1e-4f, $"{pooling}");
        }
    }

    [TestMethod]
    public void DocumentsOfOneAndManyWindowsScoreTogetherInTheirOwnOrder()
    {
        // A batch mixing long and short rows: each row's score must be the one it gets alone.
        var ml = new MLContext(1);
        using var stage = Classifier(ml, WindowPooling.Mean);
        string[] texts = [WindowTexts[1], Document, LongTextKit.Words(5, 9), LongTextKit.Words(2, 35), Document];
        var together = LongTextKit.Scores(stage, ml, texts);
        for (int i = 0; i < texts.Length; i++)
            AssertClose(LongTextKit.Scores(stage, ml, texts[i])[0], together[i], 1e-5f, $"row {i}");
    }
}
