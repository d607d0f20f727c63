using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Stages.LongText;

/// <summary>
/// Sentence pairs whose label is decided at the end of a long first text: both strategies cut the first text and keep
/// the second, with both pair encodings (one joined sequence, and the bi-encoder's two sequences).
/// </summary>
[TestClass]
public sealed class LongTextPairTests
{
    // A pair's first text gets 10 of the 16 positions (3 specials, 3 second-text tokens). 16 words: truncation keeps
    // words 0–9, none of the deciding last three; head and tail keeps 0–2 and 9–15; sliding windows (stride 5) start
    // at 0, 5 and 6, the last two holding deciding words.
    private const int Length = 16;
    private static readonly EmbeddedOnnx.TempFolder Temp = new();
    private static readonly Lazy<BaseModel> Base = new(() => LongTextKit.TinyBase(Temp.Path));

    [ClassCleanup]
    public static void Cleanup() => Temp.Dispose();

    public static IEnumerable<object[]> Cases =>
    [
        [LongTextStrategy.HeadAndTail, PairEncoding.BiEncoder],
        [LongTextStrategy.SlidingWindow, PairEncoding.CrossEncoder],
    ];

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void PairsLearnALabelDecidedAtTheEndOfTheFirstText(LongTextStrategy strategy, PairEncoding encoding)
    {
        var ml = new MLContext(1);
        var o = LongTextKit.Options(Base.Value, strategy, pair: true);
        o.PairEncoding = encoding;
        o.Method = new Microsoft.ML.Peft.Methods.Full.FullFineTuningConfig();
        o.LearningRate = 3e-3;
        o.Epochs = 5;
        o.ValidationFraction = null;
        o.ValidationSet = LongTextKit.Keyed(ml, LongTextKit.EndDecided(60, seed: 3, length: Length, pair: true));
        using var stage = LongTextKit.Fit(ml, LongTextKit.EndDecided(128, seed: 1, length: Length, pair: true), o);
        var test = LongTextKit.EndDecided(100, seed: 2, length: Length, pair: true);
        double accuracy = LongTextKit.Accuracy(stage, test, ml);
        Console.WriteLine($"{strategy} {encoding}: test accuracy {accuracy:F3}");
        Assert.IsGreaterThan(0.8, accuracy);
    }
}
