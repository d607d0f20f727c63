using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Modeling;

[TestClass]
public sealed class BertModelTests
{
    internal static EncoderConfig Tiny(EncoderArchitecture arch = EncoderArchitecture.Bert) => new()
    {
        Architecture = arch, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 32,
        VocabSize = 50, MaxPositionEmbeddings = 40, TypeVocabSize = arch == EncoderArchitecture.DistilBert ? 0 : 2,
        PadTokenId = arch == EncoderArchitecture.Roberta ? 1 : 0, LayerNormEps = 1e-12,
    };

    [TestMethod]
    public void ParameterNamesFollowHuggingFace()
    {
        using var model = new BertModel(Tiny(), withPooler: true);
        var names = model.state_dict().Keys.ToHashSet();
        string[] expected =
        [
            "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
            "encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.key.bias",
            "encoder.layer.1.attention.self.value.weight",
            "encoder.layer.1.attention.output.dense.weight", "encoder.layer.1.attention.output.LayerNorm.bias",
            "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.bias",
            "encoder.layer.1.output.LayerNorm.weight",
            "pooler.dense.weight",
        ];
        foreach (var n in expected) Assert.Contains(n, names, $"missing {n}");
        // 5 embedding tensors + 16 per layer + pooler's 2.
        Assert.HasCount(5 + 16 * 2 + 2, names);
        Assert.AreEqual(16L * 16, model.state_dict()["encoder.layer.0.attention.self.query.weight"].numel());
    }

    [TestMethod]
    public void ForwardMatchesDirectComputation()
    {
        torch.manual_seed(3);
        var config = Tiny();
        using var model = new BertModel(config);
        model.eval();
        using var ids = tensor(new long[] { 2, 7, 9, 11, 3, 2, 5, 3, 0, 0 }, [2, 5]);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 5]);
        using var types = tensor(new long[] { 0, 0, 0, 1, 1, 0, 0, 0, 0, 0 }, [2, 5]);
        using var actual = model.forward(ids, mask, types);
        using var expected = Reference(model.state_dict(), config, ids, mask, types);
        // Padding positions are not compared: they are meaningless in both.
        float diff = (actual - expected).abs().mul(mask.unsqueeze(-1)).max().item<float>();
        Assert.IsLessThan(1e-5f, diff, $"max diff {diff}");
    }

    [TestMethod]
    public void RobertaPositionsStartAfterPadding()
    {
        torch.manual_seed(4);
        var config = Tiny(EncoderArchitecture.Roberta);
        using var model = new BertModel(config);
        model.eval();
        using var ids = tensor(new long[] { 0, 7, 9, 2, 0, 5, 2, 1 }, [2, 4]);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 0 }, [2, 4]);
        using var actual = model.forward(ids, mask, null);
        using var expected = Reference(model.state_dict(), config, ids, mask, null);
        float diff = (actual - expected).abs().mul(mask.unsqueeze(-1)).max().item<float>();
        Assert.IsLessThan(1e-5f, diff, $"max diff {diff}");
    }

    [TestMethod]
    public void PaddingDoesNotChangeRealTokens()
    {
        torch.manual_seed(5);
        using var model = new BertModel(Tiny());
        model.eval();
        using var alone =
            model.forward(tensor(new long[] { 2, 7, 9 }, [1, 3]), ones(1, 3, dtype: ScalarType.Int64), null);
        using var padded = model.forward(tensor(new long[] { 2, 7, 9, 0, 0, 0 }, [1, 6]),
            tensor(new long[] { 1, 1, 1, 0, 0, 0 }, [1, 6]), null);
        float diff = (alone - padded[.., ..3]).abs().max().item<float>();
        Assert.IsLessThan(1e-5f, diff);
    }

    [TestMethod]
    public void DistilBertCheckpointNamesMapOntoBert()
    {
        Assert.AreEqual("encoder.layer.3.attention.self.query.weight",
            CheckpointNames.ToEncoderName("distilbert.transformer.layer.3.attention.q_lin.weight",
                EncoderArchitecture.DistilBert));
        Assert.AreEqual("encoder.layer.0.output.LayerNorm.bias",
            CheckpointNames.ToEncoderName("transformer.layer.0.output_layer_norm.bias",
                EncoderArchitecture.DistilBert));
        Assert.AreEqual("embeddings.LayerNorm.weight",
            CheckpointNames.ToEncoderName("bert.embeddings.LayerNorm.gamma", EncoderArchitecture.Bert));
        Assert.IsNull(CheckpointNames.ToEncoderName("classifier.weight", EncoderArchitecture.Bert));
        Assert.IsNull(CheckpointNames.ToEncoderName("embeddings.position_ids", EncoderArchitecture.Bert));
    }

    [TestMethod]
    public void ConfigRoundTripsThroughJson()
    {
        var c = Tiny(EncoderArchitecture.Roberta) with { HiddenAct = "gelu_new", LayerNormEps = 1e-5 };
        Assert.AreEqual(c, EncoderConfig.FromJson(c.ToJson()));
        var d = Tiny(EncoderArchitecture.DistilBert);
        Assert.AreEqual(d, EncoderConfig.FromJson(d.ToJson()));
        var ex = Assert.ThrowsExactly<ArgumentException>(() =>
            EncoderConfig.FromJson("""{"hidden_size": 10, "num_attention_heads": 3}"""));
        StringAssert.Contains(ex.Message, "num_attention_heads");
    }

    /// <summary>Textbook BERT written with plain tensor ops (no SDPA, no modules), reading the same weights.</summary>
    internal static Tensor Reference(Dictionary<string, Tensor> w, EncoderConfig c, Tensor ids, Tensor mask,
        Tensor? types)
    {
        using var scope = NewDisposeScope();
        Tensor Lin(Tensor x, string n) => x.matmul(w[n + ".weight"].t()) + w[n + ".bias"];
        Tensor Ln(Tensor x, string n)
        {
            var mu = x.mean([-1], keepdim: true);
            var var_ = (x - mu).pow(2).mean([-1], keepdim: true);
            return (x - mu) / (var_ + c.LayerNormEps).sqrt() * w[n + ".weight"] + w[n + ".bias"];
        }
        long b = ids.shape[0], s = ids.shape[1];
        Tensor pos;
        if (c.Architecture == EncoderArchitecture.Roberta)
        {
            var np = ids.ne(c.PadTokenId).to(ScalarType.Int64);
            pos = np.cumsum(1) * np + c.PadTokenId;
        }
        else pos = arange(s).unsqueeze(0).expand(b, s);
        var x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos];
        if (c.TypeVocabSize > 0) x = x + w["embeddings.token_type_embeddings.weight"][types ?? zeros_like(ids)];
        x = Ln(x, "embeddings.LayerNorm");
        var bias = (1 - mask.to(ScalarType.Float32)).mul(-1e9f).view(b, 1, 1, s);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"encoder.layer.{l}.";
            Tensor Heads(Tensor t) => t.view(b, s, c.NumAttentionHeads, c.HeadSize).permute(0, 2, 1, 3);
            var q = Heads(Lin(x, p + "attention.self.query"));
            var k = Heads(Lin(x, p + "attention.self.key"));
            var v = Heads(Lin(x, p + "attention.self.value"));
            var att = (q.matmul(k.transpose(-1, -2)) / Math.Sqrt(c.HeadSize) + bias).softmax(-1);
            var ctx = att.matmul(v).permute(0, 2, 1, 3).reshape(b, s, c.HiddenSize);
            var a = Ln(Lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm");
            var h = Lin(a, p + "intermediate.dense");
            h = h * 0.5 * (1 + (h / Math.Sqrt(2)).erf());
            x = Ln(Lin(h, p + "output.dense") + a, p + "output.LayerNorm");
        }
        return x.MoveToOuterDisposeScope();
    }
}
