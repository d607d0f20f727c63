using Microsoft.ML.Peft.BaseModels;

namespace Microsoft.ML.Peft.Tests.BaseModels;

[TestClass]
public sealed class OnnxReaderTests
{
    private static OnnxModel s_miniLM = null!;

    [ClassInitialize]
    public static void Init(TestContext _) => s_miniLM = EmbeddedOnnx.Parse("MiniLM");

    [TestMethod]
    public void EmbeddedResourcesAreFoundWithoutLoadingThePackage()
    {
        var model = EmbeddedOnnx.Model("MiniLM");
        Assert.IsGreaterThan(90_000_000L, model.Length);
        var vocab = EmbeddedOnnx.Vocab("ArcticXs");
        string text = System.Text.Encoding.UTF8.GetString(vocab.ReadAllBytes());
        StringAssert.StartsWith(text, "[PAD]");
        Assert.IsFalse(AppDomain.CurrentDomain.GetAssemblies()
            .Any(a => a.GetName().Name?.StartsWith("SentenceTransformers", StringComparison.Ordinal) == true),
                       "the SentenceTransformers assemblies must not be loaded");
    }

    [TestMethod]
    public void ParsesEmbeddedMiniLM()
    {
        var g = s_miniLM.Graph;
        Assert.IsGreaterThan(500, g.Nodes.Count);
        Assert.AreEqual(13L, s_miniLM.OpsetImports[""]);
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask", "token_type_ids" }, g.Inputs);
        Assert.AreEqual("last_hidden_state", g.Outputs[0]);

        var word = g.Initializers["embeddings.word_embeddings.weight"];
        CollectionAssert.AreEqual(new long[] { 30522, 384 }, word.Dims);
        Assert.AreEqual(OnnxDataType.Float, word.DataType);
        Assert.AreEqual(30522L * 384 * 4, word.RawData.Length);
        CollectionAssert.AreEqual(new long[] { 512, 384 },
            g.Initializers["embeddings.position_embeddings.weight"].Dims);
        CollectionAssert.AreEqual(new long[] { 2, 384 },
            g.Initializers["embeddings.token_type_embeddings.weight"].Dims);
        CollectionAssert.AreEqual(new long[] { 1536 }, g.Initializers["encoder.layer.5.intermediate.dense.bias"].Dims);
        Assert.AreEqual(OnnxDataType.Int64, g.Initializers["embeddings.position_ids"].DataType);
        CollectionAssert.AreEqual(Enumerable.Range(0, 512).Select(i => (long)i).ToArray(),
            g.Initializers["embeddings.position_ids"].ToInt64Array());

        // Nodes carry op types, inputs, outputs and attributes.
        var erf = g.Nodes.Where(n => n.OpType == "Erf").ToList();
        Assert.HasCount(6, erf);
        var softmax = g.Nodes.First(n => n.OpType == "Softmax");
        Assert.AreEqual(-1L, softmax.Attribute("axis")!.I);
        var transpose = g.Nodes.First(n => n.OpType == "Transpose");
        Assert.HasCount(4, transpose.Attribute("perm")!.Ints);
        var constant = g.Nodes.First(n => n.OpType == "Constant");
        Assert.IsNotNull(constant.Attribute("value")!.T);
        var gemm = g.Nodes.Single(n => n.OpType == "Gemm");
        CollectionAssert.AreEqual(new[] { "pooler.dense.weight", "pooler.dense.bias" }, gemm.Inputs.Skip(1).ToArray());
        Assert.AreEqual(1L, gemm.Attribute("transB")!.I);
    }

    [TestMethod]
    public void RawDataIsLittleEndianFloat()
    {
        var ln = s_miniLM.Graph.Initializers["embeddings.LayerNorm.weight"].ToFloatArray();
        Assert.HasCount(384, ln);
        Assert.IsTrue(ln.All(float.IsFinite));
        Assert.IsTrue(ln.Average() is > 0.05f and < 5f, $"LayerNorm weights average {ln.Average()}");
    }

    [TestMethod]
    public void ParsesTinyModelWithFloatDataAndUnpackedInts()
    {
        var tiny = new TinyOnnx();
        byte[] bytes = tiny.Build();
        var model = OnnxModel.Parse(bytes, bytes.Length, "tiny");
        var ln = model.Graph.Initializers["embeddings.LayerNorm.weight"];
        Assert.IsFalse(ln.HasRawData);
        CollectionAssert.AreEqual(tiny.Expected["embeddings.LayerNorm.weight"].Data, ln.ToFloatArray());
        var reduce = model.Graph.Nodes.First(n => n.OpType == "ReduceMean");
        CollectionAssert.AreEqual(new long[] { -1 }, reduce.Attribute("axes")!.Ints);
        Assert.AreEqual(7L, model.IrVersion);
        Assert.AreEqual("TinyOnnx", model.ProducerName);
    }

    [TestMethod]
    public void RejectsGarbageAndExternalData()
    {
        Assert.ThrowsExactly<InvalidDataException>(() => OnnxModel.Parse([0xFF, 0xFF, 0xFF], 3, "garbage"));
        Assert.ThrowsExactly<InvalidDataException>(() => OnnxModel.Parse([], 0, "empty"));

        // A tensor whose data lives in an external file: reading its values must say so.
        byte[] tensor = TinyOnnx.Message(o =>
        {
            o.WriteTag(1, Google.Protobuf.WireFormat.WireType.Varint); o.WriteInt64(4);
            o.WriteTag(2, Google.Protobuf.WireFormat.WireType.Varint); o.WriteInt32(1);
            o.WriteTag(8, Google.Protobuf.WireFormat.WireType.LengthDelimited); o.WriteString("big");
            o.WriteTag(14, Google.Protobuf.WireFormat.WireType.Varint); o.WriteInt32(1);
        });
        byte[] graph = TinyOnnx.Message(o => TinyOnnx.Sub(o, 5, tensor));
        byte[] model = TinyOnnx.Message(o => TinyOnnx.Sub(o, 7, graph));
        var parsed = OnnxModel.Parse(model, model.Length, "external");
        var e = Assert.ThrowsExactly<NotSupportedException>(() => parsed.Graph.Initializers["big"].ToTorch());
        StringAssert.Contains(e.Message, "external");
    }
}
