using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

[TestClass]
public sealed class WeightCacheTests
{
    private static void AssertSameWeights(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual)
    {
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList());
        foreach (var (name, t) in expected)
        {
            CollectionAssert.AreEqual(t.shape, actual[name].shape, name);
            Assert.IsTrue(t.allclose(actual[name], rtol: 0, atol: 0), $"{name} differs");
        }
    }

    private static void DisposeAll(Dictionary<string, Tensor> weights)
    {
        foreach (var t in weights.Values) t.Dispose();
    }

    [TestMethod]
    public void SafeTensorsRoundTripKeepsOrderTypesAndChecksum()
    {
        using var folder = new EmbeddedOnnx.TempFolder();
        string path = Path.Combine(folder.Path, "x.safetensors");
        using var a = arange(12, dtype: ScalarType.Float32).reshape(3, 4);
        using var b = tensor(new long[] { 5, -7 });
        using var c = ones(2, 2, dtype: ScalarType.BFloat16);
        SafeTensors.WriteAtomic(path, new Dictionary<string, Tensor> { ["z.a"] = a, ["b"] = b, ["c"] = c },
            new Dictionary<string, string> { ["k"] = "v" });
        var header = SafeTensors.ReadHeader(path);
        CollectionAssert.AreEqual(new[] { "z.a", "b", "c" }, header.Entries.Select(e => e.Name).ToArray());
        Assert.AreEqual("v", header.Metadata["k"]);
        Assert.AreEqual(0L, header.DataStart % 8);
        var back = SafeTensors.Read(path, verifyHash: true);
        try
        {
            CollectionAssert.AreEqual(new[] { "z.a", "b", "c" }, back.Keys.ToArray());
            Assert.IsTrue(back["z.a"].allclose(a));
            Assert.AreEqual(-7L, back["b"][1].item<long>());
            Assert.AreEqual(ScalarType.BFloat16, back["c"].dtype);
        }
        finally { DisposeAll(back); }
        Assert.IsEmpty(Directory.GetFiles(folder.Path, "*.tmp"), "temporary files are cleaned up");
    }

    [TestMethod]
    public void SecondLoadComesFromCacheWithIdenticalTensors()
    {
        using var folder = new EmbeddedOnnx.TempFolder();
        var tiny = new TinyOnnx();
        var (onnx, vocab) = tiny.WriteTo(Path.Combine(folder.Path, "src"));
        string cache = Path.Combine(folder.Path, "cache");

        var first = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: cache);
        Assert.IsFalse(first.LoadStats.FromCache);
        Assert.IsTrue(WeightCache.IsSha256(first.Sha256));
        Assert.AreEqual(Path.Combine(cache, first.Sha256), first.CacheDirectory);
        Assert.IsTrue(File.Exists(Path.Combine(cache, first.Sha256, "model.safetensors")));
        Assert.IsTrue(File.Exists(Path.Combine(cache, first.Sha256, "config.json")));
        var w1 = first.LoadWeights();

        var second = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: cache);
        Assert.IsTrue(second.LoadStats.FromCache);
        Assert.AreEqual(first.Sha256, second.Sha256);
        Assert.AreEqual(first.Config, second.Config);
        Assert.IsTrue(second.HasPooler);
        var w2 = second.LoadWeights();
        Assert.IsTrue(second.LastWeightsLoad!.FromCache);
        try
        {
            AssertSameWeights(w1, w2);
            foreach (var (name, (shape, data)) in tiny.Expected)
                CollectionAssert.AreEqual(data, w2[name].data<float>().ToArray(), name);
        }
        finally { DisposeAll(w1); DisposeAll(w2); }

        var noPooler = second.LoadWeights(includePooler: false);
        Assert.IsFalse(noPooler.Keys.Any(k => k.StartsWith("pooler.", StringComparison.Ordinal)));
        DisposeAll(noPooler);
    }

    [TestMethod]
    [DataRow("flip")]
    [DataRow("truncate")]
    [DataRow("header")]
    [DataRow("config")]
    [DataRow("delete")]
    public void DamagedCacheEntryIsRebuilt(string damage)
    {
        using var folder = new EmbeddedOnnx.TempFolder();
        var tiny = new TinyOnnx();
        var (onnx, vocab) = tiny.WriteTo(Path.Combine(folder.Path, "src"));
        string cache = Path.Combine(folder.Path, "cache");
        var model = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: cache);
        var reference = model.LoadWeights();

        string weights = Path.Combine(model.CacheDirectory!, "model.safetensors");
        string config = Path.Combine(model.CacheDirectory!, "config.json");
        byte[] bytes = File.ReadAllBytes(weights);
        switch (damage)
        {
            case "flip": bytes[^10] ^= 0x40; File.WriteAllBytes(weights, bytes); break;
            case "truncate": File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]); break;
            case "header": bytes[8] = (byte)'#'; File.WriteAllBytes(weights, bytes); break;
            case "config": File.WriteAllText(config, "{ not json"); break;
            case "delete": File.Delete(weights); break;
        }

        // An existing BaseModel notices when it loads the weights...
        var again = model.LoadWeights();
        try
        {
            if (damage != "config")
            {
                Assert.IsFalse(model.LastWeightsLoad!.FromCache, damage);
                StringAssert.Contains(model.LastWeightsLoad.Note, "rebuilt");
            }
            AssertSameWeights(reference, again);
        }
        finally { DisposeAll(again); }

        // ...and a new one notices when it is created; either way the entry is whole again afterwards.
        if (damage == "config") File.WriteAllText(config, "{ not json");
        else File.WriteAllBytes(weights, bytes[..16]);
        var fresh = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: cache);
        Assert.IsFalse(fresh.LoadStats.FromCache);
        StringAssert.Contains(fresh.LoadStats.Note, "damaged");
        var rebuilt = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: cache);
        Assert.IsTrue(rebuilt.LoadStats.FromCache);
        var last = rebuilt.LoadWeights();
        try
        {
            Assert.IsTrue(rebuilt.LastWeightsLoad!.FromCache);
            AssertSameWeights(reference, last);
        }
        finally { DisposeAll(last); DisposeAll(reference); }
    }

    [TestMethod]
    public void UnwritableCacheFallsBackToMemory()
    {
        using var folder = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(folder.Path, "src"));
        string blocker = Path.Combine(folder.Path, "file");
        File.WriteAllText(blocker, "not a folder");
        var model = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(blocker, "cache"));
        Assert.IsNull(model.CacheDirectory);
        StringAssert.Contains(model.LoadStats.Note, "kept in memory");
        var w = model.LoadWeights();
        Assert.IsTrue(w.ContainsKey("encoder.layer.1.output.dense.weight"));
        DisposeAll(w);
    }

    [TestMethod]
    public void FromOnnxExposesVocabularyAndLoadsIntoBertModel()
    {
        using var folder = new EmbeddedOnnx.TempFolder();
        var tiny = new TinyOnnx();
        var (onnx, vocab) = tiny.WriteTo(Path.Combine(folder.Path, "src"));
        var model = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(folder.Path, "cache"));
        Assert.AreEqual("tiny", model.Name);
        Assert.IsTrue(model.DoLowerCase);
        Assert.AreEqual("vocab.txt", model.VocabFileName);
        using (var reader = new StreamReader(model.OpenVocab())) Assert.AreEqual("[PAD]", reader.ReadLine());
        CollectionAssert.AreEqual(File.ReadAllBytes(vocab), model.GetVocabBytes());

        using var encoder = new BertModel(model.Config, withPooler: true);
        model.LoadInto(encoder);
        var state = encoder.state_dict();
        foreach (var (name, (shape, data)) in tiny.Expected)
            CollectionAssert.AreEqual(data, state[name].data<float>().ToArray(), name);

        using var withoutPooler = model.CreateEncoder();
        Assert.IsFalse(withoutPooler.HasPooler);

        var small = model.Config with { NumHiddenLayers = 1 };
        using var wrong = new BertModel(small);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => model.LoadInto(wrong));
        StringAssert.Contains(e.Message, "not in the module: encoder.layer.1.");
    }

    [TestMethod]
    public void CasedVocabularyIsDetected()
    {
        Assert.IsTrue(BaseModel.InferLowerCase(System.Text.Encoding.UTF8.GetBytes("[PAD]\n[CLS]\nhello\n##ing\n")));
        Assert.IsFalse(BaseModel.InferLowerCase(System.Text.Encoding.UTF8.GetBytes("[PAD]\n[CLS]\nHello\n##ing\n")));
    }
}
