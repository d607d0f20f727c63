using System.Text;
using Microsoft.ML.Peft.Tokenization;
using static Microsoft.ML.Peft.Tests.Tokenization.TokenizationTestData;

namespace Microsoft.ML.Peft.Tests.Tokenization;

[TestClass]
public sealed class WordPieceTokenizerTests
{
    private static int Cls => VocabId("[CLS]");
    private static int Sep => VocabId("[SEP]");

    [TestMethod]
    public void KnownIds_MatchHuggingFaceBertBaseUncased()
    {
        // Verified against Hugging Face bert-base-uncased.
        int[] expected = [101, 7592, 2088, 1010, 2009, 1005, 1055, 14477, 20961, 3468, 999, 102];
        TokenizedText t = Bert.EncodeSingle("Hello world, it's unaffable!");
        CollectionAssert.AreEqual(expected, t.InputIds);
        CollectionAssert.AreEqual(new int[expected.Length], t.TokenTypeIds);
    }

    [TestMethod]
    public void SpecialTokenIds_AndVocabSize_ComeFromVocabFile()
    {
        Assert.AreEqual(VocabId("[CLS]"), Bert.ClsTokenId);
        Assert.AreEqual(VocabId("[SEP]"), Bert.SepTokenId);
        Assert.AreEqual(VocabId("[PAD]"), Bert.PadTokenId);
        Assert.AreEqual(VocabId("[UNK]"), Bert.UnknownTokenId);
        Assert.AreEqual(VocabId("[MASK]"), Bert.MaskTokenId);
        Assert.AreEqual((101, 102, 0, 100, 103),
            (Bert.ClsTokenId, Bert.SepTokenId, Bert.PadTokenId, Bert.UnknownTokenId, Bert.MaskTokenId!.Value));
        Assert.AreEqual(30522, Bert.VocabSize);
        Assert.AreEqual(512, Bert.ModelMaxLength);
        Assert.IsTrue(Bert.LowerCase);
        Assert.AreEqual(TextTokenizerKind.WordPiece, Bert.Kind);
    }

    [TestMethod]
    public void WholeWords_GetTheirVocabLineIds()
    {
        CollectionAssert.AreEqual(new[] { Cls, VocabId("the"), VocabId("cat"), Sep },
            Bert.EncodeSingle("the cat").InputIds);
        CollectionAssert.AreEqual(
            new[] { Cls, VocabId("the"), VocabId("cat"), VocabId("sat"), VocabId("on"), VocabId("the"), VocabId("mat"),
                VocabId("."), Sep },
            Bert.EncodeSingle("The CAT sat on the mat.").InputIds);
    }

    [TestMethod]
    public void Accents_AreStripped_AndUnicodeIsLowerCased()
    {
        int[] ids = Bert.EncodeSingle("Café ÉCOLE naïve Über Zürich").InputIds;
        CollectionAssert.AreEqual(
            new[] { Cls, VocabId("cafe"), VocabId("ecole"), VocabId("naive"), VocabId("uber"), VocabId("zurich"), Sep },
                ids);
        // Decomposed input (e + combining acute) gives the same ids as the precomposed one.
        CollectionAssert.AreEqual(ids,
            Bert.EncodeSingle("Cafe\u0301 E\u0301COLE nai\u0308ve U\u0308ber Zu\u0308rich").InputIds);
        // Greek capitals are lower-cased too: Σ → σ.
        CollectionAssert.AreEqual(new[] { Cls, VocabId("σ"), Sep }, Bert.EncodeSingle("Σ").InputIds);
    }

    [TestMethod]
    public void CjkCharacters_AreSplitIntoSingleCharacters()
    {
        CollectionAssert.AreEqual(
            new[] { Cls, VocabId("中"), VocabId("文"), VocabId("日"), VocabId("本"), Sep },
            Bert.EncodeSingle("中文日本").InputIds);
        CollectionAssert.AreEqual(
            new[] { Cls, VocabId("the"), VocabId("中"), VocabId("cat"), Sep },
            Bert.EncodeSingle("the中cat").InputIds);
    }

    [TestMethod]
    public void UnknownCharacters_MapToUnk_AndSpecialTokenTextIsRecognised()
    {
        CollectionAssert.AreEqual(new[] { Cls, VocabId("the"), VocabId("[UNK]"), Sep },
            Bert.EncodeSingle("the \U0001F642").InputIds);
        CollectionAssert.AreEqual(new[] { Cls, VocabId("the"), Sep, VocabId("cat"), Sep },
            Bert.EncodeSingle("the [SEP] cat").InputIds);
    }

    [TestMethod]
    public void Symbols_AreKeptAsHuggingFaceDoes()
    {
        // HF's BasicTokenizer treats ASCII symbols as punctuation (own token) and keeps other symbols; the
        // Microsoft.ML.Tokenizers default pre-tokenizer would drop all of them.
        CollectionAssert.AreEqual(
            new[] { Cls, VocabId("$"), VocabId("100"), VocabId("+"), VocabId("5"), VocabId("="), VocabId("105"),
                VocabId("^"), VocabId("|"), VocabId("~"), Sep },
            Bert.EncodeSingle("$100+5 = 105^|~").InputIds);
        CollectionAssert.AreEqual(new[] { Cls, VocabId("€"), VocabId("©"), VocabId("a"), VocabId("_"), VocabId("b"),
            Sep }, Bert.EncodeSingle("€ © a_b").InputIds);
    }

    [TestMethod]
    public void Newlines_AndTabs_SeparateWords_FormatCharactersAreRemoved()
    {
        int[] expected = [Cls, VocabId("hello"), VocabId("world"), VocabId("the"), VocabId("cat"), Sep];
        CollectionAssert.AreEqual(expected, Bert.EncodeSingle("hello\nworld\tthe\r\ncat").InputIds);
        // U+00AD soft hyphen and U+200B zero-width space are format characters: HF deletes them.
        CollectionAssert.AreEqual(Bert.EncodeSingle("unaffable").InputIds,
            Bert.EncodeSingle("un\u00ADaff\u200Bable").InputIds);
        Assert.AreSame("plain text", WordPieceTextTokenizer.CleanText("plain text"));
    }

    [TestMethod]
    public void Pair_LayoutAndTokenTypes()
    {
        TokenizedText t = Bert.EncodePair("the cat", "a dog");
        CollectionAssert.AreEqual(new[] { Cls, VocabId("the"), VocabId("cat"), Sep, VocabId("a"), VocabId("dog"), Sep },
            t.InputIds);
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 0, 1, 1, 1 }, t.TokenTypeIds);
        Assert.AreEqual((2, 2), (t.FirstSegmentLength, t.SecondSegmentLength));
        Assert.AreEqual(3, Bert.SpecialTokenCountPair);
    }

    [TestMethod]
    public void NullAndEmpty_GiveOnlySpecialTokens()
    {
        CollectionAssert.AreEqual(new[] { Cls, Sep }, Bert.EncodeSingle(null).InputIds);
        CollectionAssert.AreEqual(new[] { Cls, Sep }, Bert.EncodeSingle("").InputIds);
        CollectionAssert.AreEqual(new[] { Cls, Sep }, Bert.EncodeSingle("   \t\n").InputIds);
        TokenizedText p = Bert.EncodePair(null, "");
        CollectionAssert.AreEqual(new[] { Cls, Sep, Sep }, p.InputIds);
        CollectionAssert.AreEqual(new[] { 0, 0, 1 }, p.TokenTypeIds);
        TokenizedText q = Bert.EncodePair(null, "cat");
        CollectionAssert.AreEqual(new[] { Cls, Sep, VocabId("cat"), Sep }, q.InputIds);
        CollectionAssert.AreEqual(new[] { 0, 0, 1, 1 }, q.TokenTypeIds);
    }

    [TestMethod]
    public void Single_TruncatesToMaxLengthKeepingTheFirstTokens()
    {
        TokenizedText t = Bert.EncodeSingle("the cat sat on the mat", maxLength: 5);
        CollectionAssert.AreEqual(new[] { Cls, VocabId("the"), VocabId("cat"), VocabId("sat"), Sep }, t.InputIds);
        // Truncation cuts inside a word (unaffable = un ##aff ##able) as Hugging Face does.
        CollectionAssert.AreEqual(new[] { Cls, 14477, 20961, Sep },
            Bert.EncodeSingle("unaffable", maxLength: 4).InputIds);
        CollectionAssert.AreEqual(new[] { Cls, Sep }, Bert.EncodeSingle("the cat", maxLength: 2).InputIds);
    }

    [TestMethod]
    public void Pair_TruncatesLongestFirst()
    {
        int the = VocabId("the"), cat = VocabId("cat"), sat = VocabId("sat"), on = VocabId("on"), mat = VocabId("mat"),
            a = VocabId("a"), dog = VocabId("dog");
        // 6 + 2 tokens into a budget of 8 - 3 = 5: the longer first segment loses 3.
        TokenizedText t = Bert.EncodePair("the cat sat on the mat", "a dog", maxLength: 8);
        CollectionAssert.AreEqual(new[] { Cls, the, cat, sat, Sep, a, dog, Sep }, t.InputIds);
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 0, 0, 1, 1, 1 }, t.TokenTypeIds);
        // The second segment is the longer one: it is the one cut.
        TokenizedText u = Bert.EncodePair("a dog", "the cat sat on the mat", maxLength: 8);
        CollectionAssert.AreEqual(new[] { Cls, a, dog, Sep, the, cat, sat, Sep }, u.InputIds);
        // 4 + 4 into 5: ties remove from the second first: (4,4)->(4,3)->(3,3)->(3,2).
        TokenizedText v = Bert.EncodePair("the cat sat on", "the mat a dog", maxLength: 8);
        CollectionAssert.AreEqual(new[] { Cls, the, cat, sat, Sep, the, mat, Sep }, v.InputIds);
        Assert.AreEqual((3, 2), (v.FirstSegmentLength, v.SecondSegmentLength));
    }

    [TestMethod]
    public void LongestFirstLengths_MatchOneTokenAtATimeSimulation()
    {
        var rng = new Random(1234);
        for (int trial = 0; trial < 5000; trial++)
        {
            int la = rng.Next(0, 60), lb = rng.Next(0, 60), budget = rng.Next(0, 100);
            int a = la, b = lb;
            while (a + b > budget)
            {
                // Hugging Face's truncate_sequences(longest_first): cut the first if strictly longer, else the second.
                if (a > b)
                {
                    a--;
                }
                else
                {
                    b--;
                }
            }
            Assert.AreEqual((a, b), TextTokenizer.LongestFirstLengths(la, lb, budget),
                $"la={la} lb={lb} budget={budget}");
        }
    }

    [TestMethod]
    public void HugeText_IsTruncatedToMaxLength_AndMatchesThePrefixOfTheFullEncoding()
    {
        var sb = new StringBuilder();
        while (sb.Length < 100_000)
        {
            sb.Append("The quick brown fox jumps over the lazy dog, unaffable 中文! ");
        }
        string text = sb.ToString(0, 100_000);
        IReadOnlyList<int> full = Bert.EncodeWithoutSpecialTokens(text);
        Assert.IsTrue(full.Count > 10_000);

        TokenizedText t = Bert.EncodeSingle(text, maxLength: 128);
        Assert.AreEqual(128, t.Length);
        CollectionAssert.AreEqual(new[] { Cls }.Concat(full.Take(126)).Append(Sep).ToArray(), t.InputIds);

        TokenizedText p = Bert.EncodePair(text, text, maxLength: 128);
        Assert.AreEqual(128, p.Length);
        Assert.AreEqual((63, 62), (p.FirstSegmentLength, p.SecondSegmentLength));
        CollectionAssert.AreEqual(full.Take(62).ToArray(), p.InputIds.Skip(1 + 63 + 1).Take(62).ToArray());

        Assert.AreEqual(512, Bert.EncodeSingle(text).Length, "default maxLength is ModelMaxLength");

        // One 100k-character "word" (beyond WordPiece's 100-character limit) becomes a single [UNK].
        CollectionAssert.AreEqual(new[] { Cls, VocabId("[UNK]"), Sep },
            Bert.EncodeSingle(new string('a', 100_000), 64).InputIds);
    }

    [TestMethod]
    public void Batch_PadsToLongestRowWithMasks()
    {
        int pad = VocabId("[PAD]");
        TokenBatch b = Bert.EncodeBatch(["the cat", "", null, "the cat sat on the mat"], null, maxLength: 128);
        Assert.AreEqual(4, b.BatchSize);
        Assert.AreEqual(8, b.SequenceLength, "padded to the longest row, not to maxLength");
        CollectionAssert.AreEqual(new[] { 4, 2, 2, 8 }, b.Lengths);
        long[] row0 = [Cls, VocabId("the"), VocabId("cat"), Sep, pad, pad, pad, pad];
        CollectionAssert.AreEqual(row0, b.InputIds[0..8]);
        CollectionAssert.AreEqual(new long[] { 1, 1, 1, 1, 0, 0, 0, 0 }, b.AttentionMask[0..8]);
        CollectionAssert.AreEqual(new long[] { Cls, Sep, pad, pad, pad, pad, pad, pad }, b.InputIds[8..16]);
        CollectionAssert.AreEqual(new long[] { 1, 1, 0, 0, 0, 0, 0, 0 }, b.AttentionMask[16..24]);
        CollectionAssert.AreEqual(Bert.EncodeSingle("the cat sat on the mat").InputIds.Select(i => (long)i).ToArray(),
            b.InputIds[24..32]);
        CollectionAssert.AreEqual(Enumerable.Repeat(1L, 8).ToArray(), b.AttentionMask[24..32]);
        CollectionAssert.AreEqual(new long[32], b.TokenTypeIds);

        TokenBatch truncated = Bert.EncodeBatch(["the cat", "the cat sat on the mat"], null, maxLength: 5);
        Assert.AreEqual(5, truncated.SequenceLength);
        CollectionAssert.AreEqual(new[] { 4, 5 }, truncated.Lengths);
    }

    [TestMethod]
    public void Batch_Pairs_HaveSegmentTypesAndZeroTypesOnPadding()
    {
        int pad = VocabId("[PAD]");
        TokenBatch b = Bert.EncodeBatch(["the cat", "a"], ["a dog", null], maxLength: 64);
        Assert.AreEqual(7, b.SequenceLength);
        CollectionAssert.AreEqual(new[] { 7, 4 }, b.Lengths);
        CollectionAssert.AreEqual(new long[] { 0, 0, 0, 0, 1, 1, 1 }, b.TokenTypeIds[0..7]);
        CollectionAssert.AreEqual(new long[] { Cls, VocabId("a"), Sep, Sep, pad, pad, pad }, b.InputIds[7..14]);
        CollectionAssert.AreEqual(new long[] { 0, 0, 0, 1, 0, 0, 0 }, b.TokenTypeIds[7..14]);
        CollectionAssert.AreEqual(new long[] { 1, 1, 1, 1, 0, 0, 0 }, b.AttentionMask[7..14]);

        Assert.ThrowsExactly<ArgumentException>(() => Bert.EncodeBatch(["a", "b"], ["c"], 16));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Bert.EncodeBatch(["a"], ["c"], 2));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Bert.EncodeSingle("a", 1));
        TokenBatch empty = Bert.EncodeBatch([], null, 16);
        Assert.AreEqual((0, 0, 0), (empty.BatchSize, empty.SequenceLength, empty.InputIds.Length));
    }

    [TestMethod]
    public void ToTensors_HasBatchShapeAndValues()
    {
        TokenBatch b = Bert.EncodeBatch(["the cat", "a"], null, 16);
        using var scope = TorchSharp.torch.NewDisposeScope();
        var (ids, mask, types) = b.ToTensors();
        CollectionAssert.AreEqual(new long[] { 2, 4 }, ids.shape);
        CollectionAssert.AreEqual(new long[] { 2, 4 }, mask.shape);
        CollectionAssert.AreEqual(new long[] { 2, 4 }, types.shape);
        Assert.AreEqual(TorchSharp.torch.ScalarType.Int64, ids.dtype);
        CollectionAssert.AreEqual(b.InputIds, ids.data<long>().ToArray());
        CollectionAssert.AreEqual(b.AttentionMask, mask.data<long>().ToArray());
        Assert.AreEqual(7L, mask.sum().item<long>());
        b.InputIds[1] = 42; // the tensors are copies: later changes to the batch do not reach them
        Assert.AreNotEqual(42L, ids[0, 1].item<long>());
    }

    [TestMethod]
    public void ConcurrentEncoding_GivesTheSameIdsAsSequential()
    {
        string[] texts = Enumerable.Range(0, 400)
            .Select(i => $"Sentence number {i}: café {i * 7919} unaffable 中文 über")
            .ToArray();
        int[][] expected = texts.Select(t => Bert.EncodeSingle(t).InputIds).ToArray();
        var actual = new int[texts.Length][];
        Parallel.For(0, texts.Length * 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, k =>
        {
            int i = k % texts.Length;
            int[] ids = Bert.EncodeSingle(texts[i]).InputIds;
            lock (actual)
            {
                if (actual[i] is not null)
                {
                    CollectionAssert.AreEqual(actual[i], ids);
                }
                actual[i] = ids;
            }
        });
        for (int i = 0; i < texts.Length; i++)
        {
            CollectionAssert.AreEqual(expected[i], actual[i]);
        }
    }
}
