using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods.LinearProbe;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Modeling;

/// <summary>The bi-encoder pair head (Sentence-BERT) and how the stage chooses it.</summary>
[TestClass]
public sealed class PairEncodingTests
{
    private static Tensor MeanPooled(BertModel encoder, long[] ids)
    {
        using var input = tensor(ids, [1, ids.Length]);
        using var mask = ones_like(input);
        using var hidden = encoder.forward(input, mask, zeros_like(input));
        return PeftModel.MeanPool(hidden, mask);
    }

    [TestMethod]
    public void BiEncoderEncodesEachSentenceAloneAndCombinesThem()
    {
        torch.manual_seed(5);
        using var model =
            PeftModel.Create(new BertModel(BertModelTests.Tiny()), new LinearProbeConfig(), 3, Pooling.Mean, 0.0,
            PairEncoding.BiEncoder);
        model.eval();
        // Two collated pairs, [CLS]=2 a [SEP]=3 b [SEP]=3, the second shorter and padded with 0.
        long[] row1 = [2, 7, 9, 3, 11, 12, 13, 3], types1 = [0, 0, 0, 0, 1, 1, 1, 1];
        long[] row2 = [2, 5, 6, 8, 3, 10, 3, 0], types2 = [0, 0, 0, 0, 0, 1, 1, 0];
        using var ids = tensor(row1.Concat(row2).ToArray(), [2, 8]);
        using var types = tensor(types1.Concat(types2).ToArray(), [2, 8]);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 }, [2, 8]);
        using var _ = no_grad();
        using var actual = model.forward(ids, mask, types);

        var expected = new List<Tensor>();
        foreach (var (a, b) in new[] { (new long[] { 2, 7, 9, 3 }, new long[] { 2, 11, 12, 13, 3 }),
            ([2, 5, 6, 8, 3], [2, 10, 3]) })
        {
            using var u = MeanPooled(model.Encoder, a);
            using var v = MeanPooled(model.Encoder, b);
            using var features = cat([u, v, (u - v).abs(), u * v], 1);
            expected.Add(model.classifier.forward(features));
        }
        using var want = cat(expected, 0);
        Assert.AreEqual(4L * BertModelTests.Tiny().HiddenSize, model.classifier.weight!.shape[1]);
        Assert.IsLessThan(1e-5, (actual - want).abs().max().item<float>());
    }

    [TestMethod]
    public void AutoPicksTheBiEncoderForPairsOnASentenceEmbeddingBase()
    {
        var miniLm = BaseModel.MiniLM();
        PeftTextOptions Pair(PairEncoding e = PairEncoding.Auto, Pooling p = Pooling.Auto) =>
            new PeftTextClassificationOptions
        { Sentence1ColumnName = "A", Sentence2ColumnName = "B", PairEncoding = e, Pooling = p,
          Method = new LoraConfig() };
        Assert.AreEqual(PairEncoding.BiEncoder,
            PeftTextEstimator.ResolvePairEncoding(Pair(), miniLm, TextTokenizerKind.WordPiece));
        Assert.AreEqual(PairEncoding.BiEncoder,
            PeftTextEstimator.ResolvePairEncoding(Pair(p: Pooling.Cls), miniLm, TextTokenizerKind.WordPiece));
        Assert.AreEqual(PairEncoding.CrossEncoder,
            PeftTextEstimator.ResolvePairEncoding(Pair(p: Pooling.Pooler), miniLm, TextTokenizerKind.WordPiece));
        Assert.AreEqual(PairEncoding.CrossEncoder,
            PeftTextEstimator.ResolvePairEncoding(Pair(PairEncoding.CrossEncoder), miniLm,
                TextTokenizerKind.WordPiece));
        Assert.AreEqual(PairEncoding.CrossEncoder,
            PeftTextEstimator.ResolvePairEncoding(Pair(), miniLm, TextTokenizerKind.ByteLevelBpe));
        var single = new PeftTextClassificationOptions { Sentence1ColumnName = "A" };
        Assert.AreEqual(PairEncoding.CrossEncoder,
            PeftTextEstimator.ResolvePairEncoding(single, miniLm, TextTokenizerKind.WordPiece));
    }

    [TestMethod]
    public void BiEncoderWithoutWhatItNeedsNamesTheOption()
    {
        var untyped = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => PeftTextEstimator.ResolvePairEncoding(
            new PeftTextClassificationOptions { Sentence1ColumnName = "A", Sentence2ColumnName = "B",
                PairEncoding = PairEncoding.BiEncoder },
            BaseModel.MiniLM(), TextTokenizerKind.ByteLevelBpe));
        StringAssert.Contains(untyped.Message, "PairEncoding");
        var single = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new PeftTextClassificationOptions { Sentence1ColumnName = "A",
                PairEncoding = PairEncoding.BiEncoder }.Validate());
        StringAssert.Contains(single.Message, "Sentence2ColumnName");
        Assert.AreEqual("PairEncoding", single.ParamName);
    }
}
