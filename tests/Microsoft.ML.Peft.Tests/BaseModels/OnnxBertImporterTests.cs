using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

[TestClass]
public sealed class OnnxBertImporterTests
{
    private static readonly string[] Linears =
    [
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense",
    ];

    private static void CheckEmbedded(string package, bool expectPooler)
    {
        var model = EmbeddedOnnx.Parse(package);
        var result = OnnxBertImporter.Import(model, package);
        var c = result.Config;
        Assert.AreEqual(EncoderArchitecture.Bert, c.Architecture);
        Assert.AreEqual(6, c.NumHiddenLayers);
        Assert.AreEqual(384, c.HiddenSize);
        Assert.AreEqual(12, c.NumAttentionHeads);
        Assert.AreEqual(1536, c.IntermediateSize);
        Assert.AreEqual(30522, c.VocabSize);
        Assert.AreEqual(512, c.MaxPositionEmbeddings);
        Assert.AreEqual(2, c.TypeVocabSize);
        Assert.AreEqual(1e-12, c.LayerNormEps);
        Assert.AreEqual("gelu", c.HiddenAct);
        Assert.AreEqual(expectPooler, result.HasPooler);

        for (int l = 0; l < 6; l++)
            foreach (var linear in Linears)
            {
                string name = $"encoder.layer.{l}.{linear}.weight";
                Assert.IsTrue(result.Weights.ContainsKey(name), $"{package}: {name} not imported");
                long[] expected = linear switch
                {
                    "intermediate.dense" => [1536, 384],
                    "output.dense" => [384, 1536],
                    _ => [384, 384],
                };
                CollectionAssert.AreEqual(expected, result.Weights[name].Shape, name);
            }

        // Exactly the Hugging Face BertModel state dict.
        var layout = HfBertLayout.Expected(c, expectPooler);
        var problems = HfBertLayout.Compare(layout, result.Weights.ToDictionary(kv => kv.Key, kv => kv.Value.Shape));
        Assert.IsEmpty(problems, string.Join("; ", problems));

        // The 36 anonymous matrices are all distinct initializers, none chosen by name.
        var sources = result.Provenance.Where(kv => kv.Key.StartsWith("encoder.", StringComparison.Ordinal))
            .Select(kv => kv.Value.Split('\'')[1]).ToList();
        Assert.HasCount(36, sources);
        Assert.HasCount(36, sources.Distinct());

        // Linear weights are [out, in]: the query weight is the transpose of the MatMul B initializer it came from.
        string queryInit = result.Provenance["encoder.layer.0.attention.self.query.weight"].Split('\'')[1];
        using var stored = model.Graph.Initializers[queryInit].ToTorch();
        using var transposed = stored.t().contiguous();
        CollectionAssert.AreEqual(transposed.data<float>().ToArray(),
            result.Weights["encoder.layer.0.attention.self.query.weight"].Data);
    }

    [TestMethod]
    public void ImportsMiniLM() => CheckEmbedded("MiniLM", expectPooler: true);

    [TestMethod]
    public void ImportsArcticXs() => CheckEmbedded("ArcticXs", expectPooler: false);

    [TestMethod]
    public void ImportsTinyHandWrittenModel()
    {
        var tiny = new TinyOnnx();
        byte[] bytes = tiny.Build();
        var result = OnnxBertImporter.Import(OnnxModel.Parse(bytes, bytes.Length, "tiny"), "tiny");
        Assert.AreEqual(2, result.Config.NumAttentionHeads);
        Assert.AreEqual(2, result.Config.NumHiddenLayers);
        Assert.AreEqual(16, result.Config.IntermediateSize);
        Assert.AreEqual(20, result.Config.VocabSize);
        Assert.AreEqual(10, result.Config.MaxPositionEmbeddings);
        Assert.IsTrue(result.HasPooler);
        Assert.HasCount(tiny.Expected.Count, result.Weights);
        foreach (var (name, (shape, data)) in tiny.Expected)
        {
            var t = result.Weights[name];
            CollectionAssert.AreEqual(shape, t.Shape, name);
            CollectionAssert.AreEqual(data, t.Data, name);
        }
        StringAssert.Contains(result.Provenance["encoder.layer.0.intermediate.dense.weight"], "MatMul");
        StringAssert.Contains(result.Provenance["pooler.dense.weight"], "Gemm");
    }

    [TestMethod]
    public void MissingMatrixIsReportedByName()
    {
        var tiny = new TinyOnnx { OmitLayer1KeyMatMul = true };
        byte[] bytes = tiny.Build();
        var model = OnnxModel.Parse(bytes, bytes.Length, "tiny-broken");
        var e = Assert.ThrowsExactly<InvalidDataException>(() => OnnxBertImporter.Import(model, "tiny-broken"));
        StringAssert.Contains(e.Message, "1 tensor(s) not found");
        StringAssert.Contains(e.Message, "encoder.layer.1.attention.self.key.weight");
        StringAssert.Contains(e.Message, "no MatMul");
        StringAssert.Contains(e.Message, "tiny-broken");
    }

    [TestMethod]
    public void NotABertExportIsReported()
    {
        byte[] tensor = TinyOnnx.FloatTensor("some.weight", [2, 2], [1, 2, 3, 4], rawData: true);
        byte[] graph = TinyOnnx.Message(o => TinyOnnx.Sub(o, 5, tensor));
        byte[] bytes = TinyOnnx.Message(o => TinyOnnx.Sub(o, 7, graph));
        var e = Assert.ThrowsExactly<InvalidDataException>(() =>
            OnnxBertImporter.Import(OnnxModel.Parse(bytes, bytes.Length, "x"), "x"));
        StringAssert.Contains(e.Message, "embeddings.word_embeddings.weight");
    }
}
