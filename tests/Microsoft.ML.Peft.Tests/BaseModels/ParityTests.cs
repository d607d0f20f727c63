using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Tokenizers;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

/// <summary>
/// Runs <see cref="BertModel"/> with imported weights and ONNX Runtime on the very same ONNX file and token ids,
/// and compares <c>last_hidden_state</c> at every non-padded position.
/// </summary>
internal sealed class ParityHarness : IDisposable
{
    public const double Tolerance = 1e-4;

    public static readonly string[] Sentences =
    [
        "Hello world, it's unaffable!",
        "A",
        "The quick brown fox jumps over the lazy dog.",
        "What?!... No way -- that's (really) \"unbelievable\"; isn't it?",
        "Café naïve résumé: crème brûlée à la carte.",
        "我爱自然语言处理。",
        "Γειά σου Κόσμε! Привет, мир!",
        "Rocket launch at 09:30 UTC 🚀🚀 — price $1,234.56 (+7.5%).",
        "e-mail: someone@example.com, url: https://example.org/path?q=1&r=2",
        "   leading and trailing whitespace   ",
        "ALL CAPS SHOUTING DOES NOT MATTER FOR AN UNCASED MODEL",
        "Numbers 1 22 333 4444 55555 666666 7777777",
        "Tokenization of antidisestablishmentarianism and supercalifragilisticexpialidocious.",
        "Short.",
        "This movie was absolutely wonderful, I loved every minute of it.",
        "Terrible service; the food was cold and the waiter was rude.",
        "日本語のテキストも少し混ぜてみます。",
        "Tabs\tand\nnewlines\r\ninside the text.",
        "[CLS] literal special tokens [SEP] in the input [MASK]",
        string.Join(" ",
            Enumerable.Range(0, 30).Select(i => $"word{i} is part of a rather long paragraph, number {i}.")),
        "Mixed: ŁÓDŹ, São Paulo, Zürich, Kraków, İstanbul, Ærøskøbing.",
        "The end.",
    ];

    public static readonly (string A, string B) Pair = ("How old are you?", "I am six years old, thanks for asking.");

    private readonly InferenceSession _session;
    private readonly BertModel _encoder;
    private readonly BertTokenizer _tokenizer;
    public BaseModel Model { get; }
    public BaseModelLoadStats FirstLoad { get; }

    public ParityHarness(string package, Func<string?, BaseModel> create)
    {
        // A private cache folder: the first creation converts, the second must come from the cache.
        CacheFolder = new EmbeddedOnnx.TempFolder();
        FirstLoad = create(CacheFolder.Path).LoadStats;
        Model = create(CacheFolder.Path);
        _encoder = Model.CreateEncoder();
        _encoder.eval();
        _tokenizer = BertTokenizer.Create(Model.OpenVocab(),
            new BertOptions { LowerCaseBeforeTokenization = Model.DoLowerCase });
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        _session = new InferenceSession(EmbeddedOnnx.Model(package).ReadAllBytes(), options);
    }

    public EmbeddedOnnx.TempFolder CacheFolder { get; }

    public (long[] Ids, long[] Types) Encode(string text)
    {
        var ids = _tokenizer.EncodeToIds(text, addSpecialTokens: true, considerPreTokenization: true,
            considerNormalization: true).Select(i => (long)i).Take(512).ToArray();
        return (ids, new long[ids.Length]);
    }

    public (long[] Ids, long[] Types) EncodePair(string a, string b)
    {
        var ia = _tokenizer.EncodeToIds(a, addSpecialTokens: false, considerPreTokenization: true,
            considerNormalization: true);
        var ib = _tokenizer.EncodeToIds(b, addSpecialTokens: false, considerPreTokenization: true,
            considerNormalization: true);
        var ids = _tokenizer.BuildInputsWithSpecialTokens(ia, ib).Select(i => (long)i).ToArray();
        var types = _tokenizer.CreateTokenTypeIdsFromSequences(ia, ib).Select(i => (long)i).ToArray();
        return (ids, types);
    }

    /// <summary>Runs both on a (padded) batch; returns the largest absolute difference over non-padded
    /// positions.</summary>
    public double MaxDiff(IReadOnlyList<(long[] Ids, long[] Types)> batch)
    {
        int b = batch.Count, s = batch.Max(x => x.Ids.Length), h = Model.Config.HiddenSize;
        var ids = new long[b * s];
        var mask = new long[b * s];
        var types = new long[b * s];
        for (int r = 0; r < b; r++)
            for (int c = 0; c < batch[r].Ids.Length; c++)
            {
                ids[r * s + c] = batch[r].Ids[c];
                types[r * s + c] = batch[r].Types[c];
                mask[r * s + c] = 1;
            }

        float[] ours;
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            var output = _encoder.forward(tensor(ids, [b, s]), tensor(mask, [b, s]), tensor(types, [b, s]));
            ours = output.data<float>().ToArray();
        }

        float[] reference;
        long[] shape = [b, s];
        using (var inIds = OrtValue.CreateTensorValueFromMemory(ids, shape))
        using (var inMask = OrtValue.CreateTensorValueFromMemory(mask, shape))
        using (var inTypes = OrtValue.CreateTensorValueFromMemory(types, shape))
        using (var runOptions = new RunOptions())
        using (var outputs = _session.Run(runOptions, ["input_ids", "attention_mask", "token_type_ids"],
            [inIds, inMask, inTypes], ["last_hidden_state"]))
        {
            reference = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }

        Assert.HasCount(b * s * h, ours);
        Assert.HasCount(b * s * h, reference);
        double max = 0;
        for (int r = 0; r < b; r++)
            for (int c = 0; c < batch[r].Ids.Length; c++)
                for (int k = 0; k < h; k++)
                {
                    int i = (r * s + c) * h + k;
                    Assert.IsTrue(float.IsFinite(ours[i]), "non-finite output");
                    max = Math.Max(max, Math.Abs(ours[i] - reference[i]));
                }
        return max;
    }

    public void Dispose()
    {
        _session.Dispose();
        _encoder.Dispose();
        CacheFolder.Dispose();
    }
}

internal static class ParityChecks
{
    public static void Unpadded(ParityHarness h, string label)
    {
        double worst = 0;
        foreach (var sentence in ParityHarness.Sentences)
        {
            double d = h.MaxDiff([h.Encode(sentence)]);
            Assert.IsLessThan(ParityHarness.Tolerance, d, $"{label}: '{sentence}' differs by {d:E2}");
            worst = Math.Max(worst, d);
        }
        double pair = h.MaxDiff([h.EncodePair(ParityHarness.Pair.A, ParityHarness.Pair.B)]);
        Assert.IsLessThan(ParityHarness.Tolerance, pair, $"{label}: sentence pair differs by {pair:E2}");
        Console.WriteLine($"{label} parity, {ParityHarness.Sentences.Length} sentences + 1 pair one at a time: max " +
            $"|diff| = {Math.Max(worst, pair):E2}");
    }

    public static void Padded(ParityHarness h, string label)
    {
        var batch = ParityHarness.Sentences.Select(h.Encode).ToList();
        batch.Insert(3, h.EncodePair(ParityHarness.Pair.A, ParityHarness.Pair.B));
        Assert.IsTrue(batch.Select(x => x.Ids.Length).Distinct().Count() > 5, "the batch must need padding");
        Assert.IsTrue(batch.Any(x => x.Types.Any(t => t == 1)), "the batch must hold token type ids");
        double d = h.MaxDiff(batch);
        Assert.IsLessThan(ParityHarness.Tolerance, d, $"{label}: padded batch differs by {d:E2}");
        Console.WriteLine($"{label} parity, padded batch of {batch.Count} (lengths " +
            $"{batch.Min(x => x.Ids.Length)}..{batch.Max(x => x.Ids.Length)}): max |diff| = {d:E2}");
    }
}

[TestClass]
public sealed class MiniLMParityTests
{
    private static ParityHarness s_h = null!;

    [ClassInitialize]
    public static void Init(TestContext _) => s_h = new ParityHarness("MiniLM", cache => BaseModel.MiniLM(cache));

    [ClassCleanup]
    public static void Cleanup() => s_h?.Dispose();

    [TestMethod]
    public void LoadsFromCacheTheSecondTime()
    {
        Assert.IsFalse(s_h.FirstLoad.FromCache);
        Assert.IsTrue(s_h.Model.LoadStats.FromCache);
        Assert.IsTrue(s_h.Model.LastWeightsLoad!.FromCache);
        Assert.AreEqual("all-MiniLM-L6-v2", s_h.Model.Name);
        Assert.IsTrue(s_h.Model.HasPooler);
        Assert.IsTrue(s_h.Model.DoLowerCase);
        Console.WriteLine($"MiniLM first load: {s_h.FirstLoad}");
        Console.WriteLine($"MiniLM cached load: {s_h.Model.LoadStats}; weights {s_h.Model.LastWeightsLoad}");
    }

    [TestMethod]
    public void KnownTokenIds()
    {
        CollectionAssert.AreEqual(new long[] { 101, 7592, 2088, 1010, 2009, 1005, 1055, 14477, 20961, 3468, 999, 102 },
            s_h.Encode("Hello world, it's unaffable!").Ids);
    }

    [TestMethod]
    public void MatchesOnnxRuntimeOneSentenceAtATime() => ParityChecks.Unpadded(s_h, "MiniLM");

    [TestMethod]
    public void MatchesOnnxRuntimeInAPaddedBatch() => ParityChecks.Padded(s_h, "MiniLM");
}

[TestClass]
public sealed class ArcticXsParityTests
{
    private static ParityHarness s_h = null!;

    [ClassInitialize]
    public static void Init(TestContext _) => s_h = new ParityHarness("ArcticXs", cache => BaseModel.ArcticXs(cache));

    [ClassCleanup]
    public static void Cleanup() => s_h?.Dispose();

    [TestMethod]
    public void LoadsFromCacheTheSecondTime()
    {
        Assert.IsFalse(s_h.FirstLoad.FromCache);
        Assert.IsTrue(s_h.Model.LoadStats.FromCache);
        Assert.AreEqual("snowflake-arctic-embed-xs", s_h.Model.Name);
        Assert.IsFalse(s_h.Model.HasPooler);
        Assert.IsTrue(BaseModel.InferLowerCase(s_h.Model.GetVocabBytes()), "arctic-embed-xs has an uncased vocabulary");
        Console.WriteLine($"ArcticXs first load: {s_h.FirstLoad}");
        Console.WriteLine($"ArcticXs cached load: {s_h.Model.LoadStats}; weights {s_h.Model.LastWeightsLoad}");
    }

    [TestMethod]
    public void MatchesOnnxRuntimeOneSentenceAtATime() => ParityChecks.Unpadded(s_h, "ArcticXs");

    [TestMethod]
    public void MatchesOnnxRuntimeInAPaddedBatch() => ParityChecks.Padded(s_h, "ArcticXs");
}
