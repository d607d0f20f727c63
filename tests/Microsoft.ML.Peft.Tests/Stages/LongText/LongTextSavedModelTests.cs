using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Stages.LongText;

/// <summary>
/// The strategy and its options are part of the model: saved, loaded, checked, and written into an ONNX export's
/// metadata; a model saved before they existed loads as Truncate; bad values fail naming the option.
/// </summary>
[TestClass]
public sealed class LongTextSavedModelTests
{
    private static readonly EmbeddedOnnx.TempFolder Temp = new();
    private static readonly Lazy<Microsoft.ML.Peft.BaseModels.BaseModel> Base =
        new(() => LongTextKit.TinyBase(Temp.Path));

    [ClassCleanup]
    public static void Cleanup() => Temp.Dispose();

    private static PeftTextTransformer SlidingStage(MLContext ml)
    {
        var o = LongTextKit.Options(Base.Value, LongTextStrategy.SlidingWindow);
        o.WindowStride = 5;
        o.MaxWindowsPerDocument = 3;
        o.WindowPooling = WindowPooling.Max;
        o.Epochs = 1;
        return LongTextKit.Fit(ml, LongTextKit.EndDecided(32, seed: 1, length: 40), o);
    }

    private static PeftTextTransformer SaveAndLoad(MLContext ml, PeftTextTransformer stage)
    {
        string path = Path.Combine(Temp.Path, $"{Guid.NewGuid():N}.zip");
        var schema = LongTextKit.Keyed(ml, LongTextKit.EndDecided(1, seed: 9)).Schema;
        ml.Model.Save(stage, schema, path);
        var loaded = new MLContext(2).Model.Load(path, out _);
        return loaded as PeftTextTransformer ?? ((IEnumerable<ITransformer>)loaded).OfType<PeftTextTransformer>()
            .Single();
    }

    [TestMethod]
    public void SaveAndLoadKeepTheStrategyItsOptionsAndTheScores()
    {
        var ml = new MLContext(1);
        using var stage = SlidingStage(ml);
        using var loaded = SaveAndLoad(ml, stage);
        Assert.AreEqual(LongTextStrategy.SlidingWindow, loaded.LongTextStrategy);
        Assert.AreEqual(new LongTextSettings
        {
            Strategy = LongTextStrategy.SlidingWindow, WindowStride = 5, MaxWindowsPerDocument = 3,
            Pooling = WindowPooling.Max,
        }, loaded.Saved.LongText);
        string[] texts = [LongTextKit.Words(0, 40), LongTextKit.Words(3, 10), LongTextKit.Words(1, 46)];
        var before = LongTextKit.Scores(stage, ml, texts);
        var after = LongTextKit.Scores(loaded, ml, texts);
        for (int i = 0; i < texts.Length; i++) CollectionAssert.AreEqual(before[i], after[i], $"row {i}");
    }

    [TestMethod]
    public void HeadAndTailWithItsHeadLengthSurvivesSaveAndLoad()
    {
        var ml = new MLContext(1);
        var o = LongTextKit.Options(Base.Value, LongTextStrategy.HeadAndTail);
        o.HeadTokens = 6;
        o.Epochs = 1;
        using var stage = LongTextKit.Fit(ml, LongTextKit.EndDecided(32, seed: 1, length: 40), o);
        using var loaded = SaveAndLoad(ml, stage);
        Assert.AreEqual(new LongTextSettings { Strategy = LongTextStrategy.HeadAndTail, HeadTokens = 6 },
            loaded.Saved.LongText);
        // Head 6, tail 8: the document's score is that of its first six and last eight words.
        CollectionAssert.AreEqual(LongTextKit.Scores(loaded, ml, LongTextKit.Words(0, 6) + " "
            + LongTextKit.Words(32, 40))[0], LongTextKit.Scores(loaded, ml, LongTextKit.Words(0, 40))[0]);
    }

    [TestMethod]
    public void AHeadBeyondAShortBasesWindowIsCutToItsRoomAndTheModelLoads()
    {
        // The tiny base has 64 positions, so MaxSequenceLength 128 becomes 64 and the room 62.
        var ml = new MLContext(1);
        var o = LongTextKit.Options(Base.Value, LongTextStrategy.HeadAndTail);
        o.MaxSequenceLength = 128;
        o.HeadTokens = 100;
        o.Epochs = 1;
        using var stage = LongTextKit.Fit(ml, LongTextKit.EndDecided(16, seed: 1, length: 20), o);
        Assert.AreEqual(62, stage.Saved.LongText!.HeadTokens);
        using var loaded = SaveAndLoad(ml, stage);
        Assert.AreEqual(62, loaded.Saved.LongText!.HeadTokens);
    }

    [TestMethod]
    public void AZipSavedBeforeLongTextOptionsLoadsAsTruncate()
    {
        var zip = Path.Combine(AppContext.BaseDirectory, "testdata", "format1-lora-tiny.zip");
        var model = new MLContext(1).Model.Load(zip, out _);
        var stage = model as PeftTextTransformer
            ?? ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        Assert.AreEqual(LongTextStrategy.Truncate, stage.LongTextStrategy);
        Assert.IsNull(stage.Saved.LongText);
    }

    [TestMethod]
    public void ATruncateStageWritesNoLongTextField()
    {
        // Keeps Truncate models' headers as they were, so older readers see nothing new.
        var ml = new MLContext(1);
        var o = LongTextKit.Options(Base.Value, LongTextStrategy.Truncate);
        o.Epochs = 1;
        using var stage = LongTextKit.Fit(ml, LongTextKit.EndDecided(16, seed: 1, length: 20), o);
        string json = JsonSerializer.Serialize(stage.Saved, PeftModelWriter.JsonOptions);
        Assert.DoesNotContain("LongText", json);
    }

    [TestMethod]
    public void ASavedFieldOutOfRangeFailsNamingIt()
    {
        var ml = new MLContext(1);
        using var stage = SlidingStage(ml);
        string json = JsonSerializer.Serialize(stage.Saved, PeftModelWriter.JsonOptions);
        var edited = JsonSerializer.Deserialize<PeftSavedModel>(json.Replace("\"MaxWindowsPerDocument\":3",
            "\"MaxWindowsPerDocument\":0"), PeftModelWriter.JsonOptions)!;
        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftSavedModelChecks.Validate(edited, "entry"));
        StringAssert.Contains(ex.Message, "'LongText.MaxWindowsPerDocument'");
        edited = JsonSerializer.Deserialize<PeftSavedModel>(json.Replace("\"WindowStride\":5",
            "\"WindowStride\":15"), PeftModelWriter.JsonOptions)!;
        ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftSavedModelChecks.Validate(edited, "entry"));
        StringAssert.Contains(ex.Message, "'LongText.WindowStride'");
    }

    private static object[] Bad(string option, Action<PeftTextOptions> spoil) => [option, spoil];

    private static Action<PeftTextOptions> With(LongTextStrategy strategy, Action<PeftTextOptions> spoil) => o =>
    {
        o.LongTextStrategy = strategy;
        spoil(o);
    };

    public static IEnumerable<object[]> BadOptions =>
    [
        Bad(nameof(PeftTextOptions.LongTextStrategy), o => o.LongTextStrategy = (LongTextStrategy)7),
        Bad(nameof(PeftTextOptions.WindowPooling), o => o.WindowPooling = (WindowPooling)(-1)),
        Bad(nameof(PeftTextOptions.HeadTokens), With(LongTextStrategy.HeadAndTail, o => o.HeadTokens = -1)),
        // Room 16 − 2 = 14.
        Bad(nameof(PeftTextOptions.HeadTokens), With(LongTextStrategy.HeadAndTail, o => o.HeadTokens = 15)),
        Bad(nameof(PeftTextOptions.HeadTokens), With(LongTextStrategy.SlidingWindow, o => o.HeadTokens = 4)),
        Bad(nameof(PeftTextOptions.WindowStride), With(LongTextStrategy.SlidingWindow, o => o.WindowStride = 0)),
        Bad(nameof(PeftTextOptions.WindowStride), With(LongTextStrategy.SlidingWindow, o => o.WindowStride = 15)),
        Bad(nameof(PeftTextOptions.WindowStride), o => o.WindowStride = 4),
        Bad(nameof(PeftTextOptions.MaxWindowsPerDocument),
            With(LongTextStrategy.SlidingWindow, o => o.MaxWindowsPerDocument = 0)),
    ];

    [TestMethod]
    [DynamicData(nameof(BadOptions))]
    public void ABadLongTextOptionFailsNamingIt(string option, Action<PeftTextOptions> spoil)
    {
        var o = new PeftTextClassificationOptions { MaxSequenceLength = LongTextKit.MaxLength };
        spoil(o);
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new MLContext(1).Peft().TextClassification(o));
        Assert.AreEqual(option, ex.ParamName);
        StringAssert.Contains(ex.Message, $"Option '{option}'");
    }

    [TestMethod]
    public void OnnxExportCarriesTheStrategyAndRefusesAnInGraphTokenizerThatWouldTruncate()
    {
        var ml = new MLContext(1);
        using var stage = SlidingStage(ml);
        var meta = stage.BuildOnnxModel().MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.AreEqual("SlidingWindow", meta["peft.long_text.strategy"]);
        Assert.AreEqual("5", meta["peft.long_text.window_stride"]);
        Assert.AreEqual("Max", meta["peft.long_text.window_pooling"]);
        Assert.AreEqual("3", meta["peft.long_text.max_windows_per_document"]);
        using var stream = new MemoryStream();
        var ex = Assert.ThrowsExactly<NotSupportedException>(() =>
            stage.ExportOnnx(stream, new OnnxExportOptions { IncludeTokenizer = true }));
        StringAssert.Contains(ex.Message, "LongTextStrategy SlidingWindow");
    }
}
