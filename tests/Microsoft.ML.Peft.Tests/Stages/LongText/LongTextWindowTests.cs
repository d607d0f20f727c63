using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Tests.Stages.LongText;

/// <summary>
/// Where the encoder step cuts a long text: with one token per word, window contents are runs of known ids, and the
/// expected offsets below are worked out by hand from the documented rules (window 16 → 14 tokens of room).
/// </summary>
[TestClass]
public sealed class LongTextWindowTests
{
    private const int Cls = 2, Sep = 3;
    private static readonly EmbeddedOnnx.TempFolder Temp = new();
    private static readonly Lazy<TextTokenizer> Tokenizer =
        new(() => LongTextKit.TinyBase(Temp.Path).CreateTokenizer());

    [ClassCleanup]
    public static void Cleanup() => Temp.Dispose();

    private static RowEncoder Encoder(LongTextSettings settings, bool pair = false) =>
        new(Tokenizer.Value, LongTextKit.MaxLength, pair, settings);

    // [CLS], filler words from..to-1 (ids 5 + i), [SEP].
    private static int[] Single(params (int From, int To)[] runs) =>
        [Cls, .. runs.SelectMany(r => Enumerable.Range(LongTextKit.FirstFillerId + r.From, r.To - r.From)), Sep];

    private static void AssertWindows(int[][] expected, TokenizedText[] windows, string what)
    {
        Assert.HasCount(expected.Length, windows, $"{what}: window count");
        for (int w = 0; w < expected.Length; w++)
            CollectionAssert.AreEqual(expected[w], windows[w].InputIds, $"{what}: window {w}");
    }

    [TestMethod]
    public void SlidingWindowsOfAFortyTokenTextStartEverySevenTokensAndTheLastEndsAtTheEnd()
    {
        // 40 tokens, room 14, stride 7 (half the room): starts 0, 7, 14, 21 (21 + 14 = 35 < 40), then 40 − 14 = 26.
        var windows = Encoder(new LongTextSettings { Strategy = LongTextStrategy.SlidingWindow })
            .Windows(LongTextKit.Words(0, 40), null);
        AssertWindows([Single((0, 14)), Single((7, 21)), Single((14, 28)), Single((21, 35)), Single((26, 40))],
            windows, "stride 7");
        Assert.IsTrue(windows.All(w => w.Length == LongTextKit.MaxLength && w.TokenTypeIds.All(t => t == 0)));
    }

    [TestMethod]
    public void AStrideAndAWindowCapKeepWindowsSpreadFromFirstToLast()
    {
        // Stride 10: starts 0, 10, 20, then 26 (four windows). Cap 3 of 4: windows round(i · 3 / 2) = 0, 2 (1.5 up),
        // 3 → starts 0, 20, 26.
        var windows = Encoder(new LongTextSettings
        {
            Strategy = LongTextStrategy.SlidingWindow, WindowStride = 10, MaxWindowsPerDocument = 3,
        }).Windows(LongTextKit.Words(0, 40), null);
        AssertWindows([Single((0, 14)), Single((20, 34)), Single((26, 40))], windows, "stride 10, cap 3");

        var one = Encoder(new LongTextSettings { Strategy = LongTextStrategy.SlidingWindow, MaxWindowsPerDocument = 1 })
            .Windows(LongTextKit.Words(0, 40), null);
        AssertWindows([Single((0, 14))], one, "cap 1");
    }

    [TestMethod]
    public void HeadAndTailKeepsAQuarterFromTheStartAndTheRestFromTheEnd()
    {
        // Room 14: head round(14 · 128 / 510 = 3.51) = 4, tail 10 (tokens 30–39).
        var windows = Encoder(new LongTextSettings { Strategy = LongTextStrategy.HeadAndTail })
            .Windows(LongTextKit.Words(0, 40), null);
        AssertWindows([Single((0, 4), (30, 40))], windows, "default head");
        var tailOnly = Encoder(new LongTextSettings { Strategy = LongTextStrategy.HeadAndTail, HeadTokens = 0 })
            .Windows(LongTextKit.Words(0, 40), null);
        AssertWindows([Single((26, 40))], tailOnly, "head 0");
    }

    [TestMethod]
    public void ATextThatFitsIsOneWindowEncodedAsTruncationEncodesIt()
    {
        foreach (var strategy in Enum.GetValues<LongTextStrategy>())
        {
            var encoder = Encoder(new LongTextSettings { Strategy = strategy });
            var windows = encoder.Windows(LongTextKit.Words(3, 17), null);
            AssertWindows([Single((3, 17))], windows, strategy.ToString());
            Assert.IsNull(encoder.Encode(LongTextKit.Words(3, 17), null).Document, strategy.ToString());
        }
        // Truncate cuts a long text at the room, as before.
        AssertWindows([Single((0, 14))], Encoder(LongTextSettings.Truncate).Windows(LongTextKit.Words(0, 40), null),
            "truncate");
    }

    [TestMethod]
    public void APairKeepsItsSecondTextInEveryWindowAndSlidesTheFirst()
    {
        // Pair budget 16 − 3 = 13; longest_first of (13, 3) gives (10, 3): the first text's room is 10, stride 5.
        // 40 tokens: starts 0, 5, …, 25 (25 + 10 = 35 < 40), then 30: seven windows.
        var encoder = Encoder(new LongTextSettings { Strategy = LongTextStrategy.SlidingWindow }, pair: true);
        var windows = encoder.Windows(LongTextKit.Words(0, 40), LongTextKit.Words(40, 43));
        int[] second = [45, 46, 47, Sep];
        int[][] expected = [.. new[] { 0, 5, 10, 15, 20, 25, 30 }.Select(s =>
            (int[])[.. Single((s, s + 10)), .. second])];
        AssertWindows(expected, windows, "pair");
        int[] types = [.. Enumerable.Repeat(0, 12), .. Enumerable.Repeat(1, 4)];
        foreach (var w in windows)
        {
            CollectionAssert.AreEqual(types, w.TokenTypeIds);
            Assert.AreEqual(10, w.FirstSegmentLength);
            Assert.AreEqual(3, w.SecondSegmentLength);
        }
        // Head and tail in the same room: head round(10 · 128 / 510 = 2.51) = 3, tail 7 (tokens 33–39).
        var headTail = Encoder(new LongTextSettings { Strategy = LongTextStrategy.HeadAndTail }, pair: true)
            .Windows(LongTextKit.Words(0, 40), LongTextKit.Words(40, 43));
        AssertWindows([[.. Single((0, 3), (33, 40)), .. second]], headTail, "pair head and tail");
    }

    [TestMethod]
    public void AnEncodedDocumentIsItsFirstWindowCarryingAllOfThem()
    {
        var encoder = Encoder(new LongTextSettings { Strategy = LongTextStrategy.SlidingWindow });
        var row = encoder.Encode(LongTextKit.Words(0, 40), null);
        CollectionAssert.AreEqual(Single((0, 14)), row.InputIds);
        Assert.IsNotNull(row.Document);
        Assert.HasCount(5, row.Document.Windows);
        Assert.IsTrue(row.Document.Windows.All(w => w.Document is null));
    }
}
