using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Prompt;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.AdditiveTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// Prompt tuning changes the output from the start (as in peft), so there is no identity-at-init test; nor a merge
/// test.
/// </summary>
[TestClass]
public sealed class PromptTuningTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaOnMiniLmShape()
    {
        Assert.AreEqual(20L * H + MiniLmHead, TrainableOnMiniLm(new PromptTuningConfig()));
        Assert.AreEqual(7_680L + MiniLmHead, TrainableOnMiniLm(new PromptTuningConfig()));
    }

    [TestMethod]
    public void TokenInitsStartFromTheEmbeddingLayersOutput()
    {
        var config = new PromptTuningConfig
        {
            NumVirtualTokens = 5, Init = PromptTuningInit.Text, InitTokenIds = [7, 9],
        };
        using var model = PeftModel.Create(Encoder(3), config, 2);
        model.eval();
        using var _ = no_grad();
        // Ids repeat to length as in peft: 7, 9, 7, 9, 7 at positions 0..4.
        using var expected = model.Encoder.embeddings
            .forward(tensor(new long[] { 7, 9, 7, 9, 7 }).unsqueeze(0), null).squeeze(0);
        var prompt = model.named_parameters().Single(p => p.name == "prompt_embeddings.weight").parameter;
        Assert.AreEqual(0f, MaxDiff(prompt, expected), 1e-6f);

        using var sampled = PeftModel.Create(
            Encoder(3), new PromptTuningConfig { NumVirtualTokens = 5, Init = PromptTuningInit.SampleVocab }, 2);
        var rows = sampled.named_parameters().Single(p => p.name == "prompt_embeddings.weight").parameter;
        // Embedding-layer outputs are LayerNorm'ed: each row has mean ≈ beta's mean and is not N(0, 1) noise.
        using var rowMeans = rows.mean([1]);
        using var lnBias = sampled.Encoder.embeddings.LayerNorm.bias!.mean();
        Assert.IsLessThan(1e-4f, (rowMeans - lnBias).abs().max().item<float>());
    }

    [TestMethod]
    public void FromTextTokenizesWithTheBaseModel()
    {
        var config = PromptTuningConfig.FromText(
            "Is the review positive or negative?", BaseModel.MiniLM(), numVirtualTokens: 8);
        Assert.AreEqual(PromptTuningInit.Text, config.Init);
        var tokenizer = BaseModel.MiniLM().CreateTokenizer();
        CollectionAssert.AreEqual(
            tokenizer.EncodeWithoutSpecialTokens("is the review positive or negative ?").ToArray(),
            config.InitTokenIds);
        var back = (PromptTuningConfig)PeftMethodConfig.FromJson(config.ToJson());
        CollectionAssert.AreEqual(config.InitTokenIds, back.InitTokenIds);
        Assert.AreEqual("Is the review positive or negative?", back.InitText);
        Assert.AreEqual(8, back.NumVirtualTokens);
    }

    [TestMethod]
    public void PromptIsPrependedAndPoolingIgnoresIt()
    {
        var (ids, mask) = Batch();
        using var model = PeftModel.Create(Encoder(4), new PromptTuningConfig { NumVirtualTokens = 3 }, 2, Pooling.Cls);
        model.eval();
        using var _ = no_grad();
        using var hidden = model.Encoder.forward(ids, mask, null);
        CollectionAssert.AreEqual(new long[] { 2, 3 + 5, 16 }, hidden.shape);
        // CLS pooling reads the first real token, not a virtual one.
        using var logits = model.forward(ids, mask, null);
        using var expected = model.classifier.forward(hidden[.., 3]);
        Assert.IsLessThan(1e-6f, MaxDiff(logits, expected));
        Assert.AreEqual(0f, PaddingLeak(model), 1e-5f);
    }

    [TestMethod]
    public void SaveLoadRoundTripGivesIdenticalScores()
    {
        var (expected, actual, saved) = RoundTrip(new PromptTuningConfig { NumVirtualTokens = 4 });
        CollectionAssert.AreEqual(expected, actual);
        CollectionAssert.AreEqual(new[] { "classifier.bias", "classifier.weight", "prompt_embeddings.weight" }, saved);
    }

    [TestMethod]
    public void BadOptionsNameTheOption()
    {
        var n = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new PromptTuningConfig { NumVirtualTokens = 0 }.Validate());
        StringAssert.Contains(n.Message, "NumVirtualTokens");
        var t = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new PromptTuningConfig { Init = PromptTuningInit.Text }.Validate());
        StringAssert.Contains(t.Message, "InitTokenIds");
        StringAssert.Contains(t.Message, "FromText");
        var v = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            PeftModel.Create(
                Encoder(5), new PromptTuningConfig { Init = PromptTuningInit.Text, InitTokenIds = [1, 999] }, 2));
        StringAssert.Contains(v.Message, "InitTokenIds");
    }
}
