using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Tokenizers;
using static Microsoft.ML.Peft.Tests.Tokenization.TokenizationTestData;

namespace Microsoft.ML.Peft.Tests.Tokenization;

/// <summary>RoBERTa byte-level BPE, from the fairseq GPT-2 files Microsoft.ML.TorchSharp embeds.</summary>
[TestClass]
public sealed class ByteLevelBpeTokenizerTests
{
    private static readonly string[] Sentences =
    [
        "Hello world",
        " Hello world",
        "Hello world, it's unaffable!",
        "The quick brown fox jumps over the lazy dog.",
        "Café naïve Zürich — 中文 🙂 emoji",
        "  multiple   spaces\tand\nnewlines  ",
        "numbers 12345 and symbols #@%&*()",
    ];

    [TestMethod]
    public void KnownIds_MatchHuggingFaceRobertaBase()
    {
        // From the Hugging Face RobertaTokenizer documentation (roberta-base).
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 2 }, Roberta.EncodeSingle("Hello world").InputIds);
        CollectionAssert.AreEqual(new[] { 0, 20920, 232, 2 }, Roberta.EncodeSingle(" Hello world").InputIds);
    }

    [TestMethod]
    public void SpecialTokenIds_AndVocabSize_AreRobertaBase()
    {
        Assert.AreEqual((0, 2, 1, 3),
            (Roberta.ClsTokenId, Roberta.SepTokenId, Roberta.PadTokenId, Roberta.UnknownTokenId));
        Assert.AreEqual(50264, Roberta.MaskTokenId);
        Assert.AreEqual(50265, Roberta.VocabSize);
        Assert.AreEqual(TextTokenizerKind.ByteLevelBpe, Roberta.Kind);
        Assert.IsFalse(Roberta.LowerCase);
        Assert.AreEqual(4, Roberta.SpecialTokenCountPair);
    }

    [TestMethod]
    public void Ids_EqualEnglishRobertaTokenizerRemappedThroughDictTxt()
    {
        // Independent path: Microsoft.ML.Tokenizers' EnglishRobertaTokenizer gives GPT-2 ids; its
        // ConvertIdsToOccurrenceRanks maps them through dict.txt to fairseq ids (already offset by the 4 leading
        // special symbols). It is only a valid oracle on ASCII text and GPT-2 ids above 4: it is not byte-level for
        // non-ASCII characters, and maps GPT-2 ids 0..4 ("!" ... "%") wrongly (e.g. "!" to 0, "%" to 4).
        EnglishRobertaTokenizer english = EnglishRobertaTokenizer.Create(
            new MemoryStream(RobertaEncoderJson), new MemoryStream(RobertaVocabBpe), new MemoryStream(RobertaDict),
                RobertaPreTokenizer.Instance);
        string[] ascii =
        [
            "Hello world", " Hello world", "Hello world, it's unaffable",
            "The quick brown fox jumps over the lazy dog.",
            "  multiple   spaces\tand\nnewlines  ", "numbers 12345 and symbols #@%&*()",
            "I'd've thought they'll re-run it?",
        ];
        foreach (string s in ascii)
        {
            IReadOnlyList<int> gpt2 = english.EncodeToIds(s);
            IReadOnlyList<int> expected = english.ConvertIdsToOccurrenceRanks(gpt2.ToList());
            IReadOnlyList<int> actual = Roberta.EncodeWithoutSpecialTokens(s);
            Assert.AreEqual(expected.Count, actual.Count, s);
            int compared = 0;
            for (int i = 0; i < gpt2.Count; i++)
            {
                if (gpt2[i] > 4)
                {
                    Assert.AreEqual(expected[i], actual[i], $"{s} @ {i}");
                    compared++;
                }
            }
            Assert.IsTrue(compared > 0, s);
        }
    }

    [TestMethod]
    public void SingleTokens_GetFourPlusTheirDictTxtRow()
    {
        // Looked up in the files directly: GPT-2 id from encoder.json, then 4 + the row of "<gpt2-id> <count>" in
        // dict.txt.
        var encoder = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(RobertaEncoderJson)!;
        string[] rows = Encoding.UTF8.GetString(RobertaDict).Split('\n');
        int FairseqId(string token) => 4
            + Array.FindIndex(rows, l => l.StartsWith($"{encoder[token]} ", StringComparison.Ordinal));
        foreach ((string text, string token) in new[] { ("!", "!"), ("%", "%"), ("Hello", "Hello"),
            (" world", "\u0120world"), ("#", "#") })
        {
            Assert.IsTrue(FairseqId(token) >= 4, token);
            CollectionAssert.AreEqual(new[] { FairseqId(token) }, Roberta.EncodeWithoutSpecialTokens(text).ToArray(),
                text);
            Assert.AreEqual(FairseqId(token), Roberta.TokenToId(token));
        }
        Assert.AreEqual(328, FairseqId("!"));
    }

    [TestMethod]
    public void NonAscii_IsByteLevel_AndDecodesLosslessly()
    {
        foreach (string s in new[] { "Café naïve Zürich — 中文 🙂 emoji", "Ünïcödé\u00A0spaces\u200B",
            "日本語のテキスト" })
        {
            IReadOnlyList<int> ids = Roberta.EncodeWithoutSpecialTokens(s);
            Assert.IsFalse(ids.Contains(Roberta.UnknownTokenId), s);
            Assert.AreEqual(s, Roberta.InnerTokenizer.Decode(ids), s);
        }
    }

    [TestMethod]
    public void SingleAndPairLayout_AllTypeIdsZero()
    {
        int[] a = Roberta.EncodeWithoutSpecialTokens("Hello world").ToArray();
        int[] b = Roberta.EncodeWithoutSpecialTokens("The lazy dog.").ToArray();
        TokenizedText p = Roberta.EncodePair("Hello world", "The lazy dog.");
        CollectionAssert.AreEqual(new[] { 0 }.Concat(a).Concat([2, 2]).Concat(b).Append(2).ToArray(), p.InputIds);
        CollectionAssert.AreEqual(new int[p.Length], p.TokenTypeIds);
        CollectionAssert.AreEqual(new[] { 0, 2 }, Roberta.EncodeSingle(null).InputIds);
        CollectionAssert.AreEqual(new[] { 0, 2, 2, 2 }, Roberta.EncodePair("", null).InputIds);
    }

    [TestMethod]
    public void Batch_PadsWithPadIdOne()
    {
        TokenBatch batch = Roberta.EncodeBatch(["Hello world", null], ["x", "The lazy dog."], 64);
        int[] row1 = Roberta.EncodePair(null, "The lazy dog.").InputIds;
        Assert.AreEqual(Math.Max(row1.Length, Roberta.EncodePair("Hello world", "x").Length), batch.SequenceLength);
        Assert.AreEqual(row1.Length, batch.Lengths[1]);
        int s = batch.SequenceLength;
        for (int j = 0; j < s; j++)
        {
            bool real = j < batch.Lengths[0];
            Assert.AreEqual(real ? 1L : 0L, batch.AttentionMask[j]);
            if (!real)
            {
                Assert.AreEqual(1L, batch.InputIds[j], "RoBERTa pads with <pad> = 1");
            }
        }
        CollectionAssert.AreEqual(row1.Select(i => (long)i).ToArray(), batch.InputIds[s..(s + row1.Length)]);
        CollectionAssert.AreEqual(new long[2 * s], batch.TokenTypeIds);
    }

    [TestMethod]
    public void HugeText_IsTruncated_EvenAsOneGiantWord()
    {
        string words = string.Concat(Enumerable.Repeat("Hello world, it's unaffable! ", 4000))[..100_000];
        IReadOnlyList<int> full = Roberta.EncodeWithoutSpecialTokens(words);
        TokenizedText t = Roberta.EncodeSingle(words, 64);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(full.Take(62)).Append(2).ToArray(), t.InputIds);

        // A single 100k-letter pre-token: the capped encoder stops short, the fallback must still fill the budget.
        string giant = new('a', 100_000);
        IReadOnlyList<int> giantFull = Roberta.EncodeWithoutSpecialTokens(giant);
        TokenizedText g = Roberta.EncodeSingle(giant, 32);
        Assert.AreEqual(32, g.Length);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(giantFull.Take(30)).Append(2).ToArray(), g.InputIds);

        TokenizedText p = Roberta.EncodePair(words, "Hello world", 16);
        Assert.AreEqual(16, p.Length);
        Assert.AreEqual((10, 2), (p.FirstSegmentLength, p.SecondSegmentLength));
    }

    [TestMethod]
    public void ExportThenLoad_AndSaveThenFromPretrained_GiveIdenticalIds()
    {
        IReadOnlyDictionary<string, byte[]> files = Roberta.ExportFiles();
        CollectionAssert.AreEquivalent(new[] { "vocab.json", "merges.txt", "tokenizer_config.json" },
            files.Keys.ToArray());
        TextTokenizer reloaded = TextTokenizer.Load(files, TextTokenizerKind.ByteLevelBpe);
        string dir = TempDir();
        Roberta.SaveFiles(dir);
        TextTokenizer fromFolder = TextTokenizer.FromPretrained(dir);
        foreach (TextTokenizer t in new[] { reloaded, fromFolder })
        {
            Assert.AreEqual(TextTokenizerKind.ByteLevelBpe, t.Kind);
            Assert.AreEqual((Roberta.VocabSize, Roberta.MaskTokenId, Roberta.PadTokenId),
                (t.VocabSize, t.MaskTokenId, t.PadTokenId));
            foreach (string s in Sentences)
            {
                CollectionAssert.AreEqual(Roberta.EncodePair(s, s).InputIds, t.EncodePair(s, s).InputIds, s);
            }
        }
        // The exported files are Hugging Face's format: vocab.json maps Ġ-prefixed tokens to roberta-base ids.
        string vocabJson = Encoding.UTF8.GetString(files["vocab.json"]);
        StringAssert.Contains(vocabJson, "\"Ġworld\":232");
        StringAssert.StartsWith(Encoding.UTF8.GetString(files["merges.txt"]), "#version: 0.2\nĠ t\n");
        Directory.Delete(dir, true);
    }

    [TestMethod]
    public void FromPretrained_TokenizerJsonOnly_Bpe_GivesTheSameIds()
    {
        IReadOnlyDictionary<string, byte[]> files = Roberta.ExportFiles();
        var merges = new JsonArray();
        foreach (string line in Encoding.UTF8.GetString(files["merges.txt"]).Split('\n').Skip(1)
            .Where(l => l.Length > 0))
        {
            string[] parts = line.Split(' ');
            merges.Add(new JsonArray(parts[0], parts[1])); // the newer ["left", "right"] form
        }
        var root = new JsonObject
        {
            ["normalizer"] = null,
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = JsonNode.Parse(files["vocab.json"]),
                ["merges"] = merges },
        };
        string dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        TextTokenizer t = TextTokenizer.FromPretrained(dir);
        Assert.AreEqual(TextTokenizerKind.ByteLevelBpe, t.Kind);
        Assert.AreEqual(Roberta.VocabSize, t.VocabSize);
        foreach (string s in Sentences)
        {
            CollectionAssert.AreEqual(Roberta.EncodeSingle(s).InputIds, t.EncodeSingle(s).InputIds, s);
        }
        Directory.Delete(dir, true);
    }
}
