using Microsoft.ML.Peft.BaseModels;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

/// <summary>
/// Each weight-source type behind <see cref="BaseModel"/> reports the identity a saved model records (kind, origin,
/// fingerprint) and hands out weights the caller owns, equal to those of the source it was made from.
/// </summary>
[TestClass]
public sealed class WeightSourceTests
{
    private static void AssertSameWeights(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual)
    {
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList());
        foreach (var (name, t) in expected)
            Assert.IsTrue(t.eq(actual[name]).all().item<bool>(), $"{name} differs");
    }

    private static void DisposeAll(params Dictionary<string, Tensor>[] all)
    {
        foreach (var d in all)
            foreach (var t in d.Values) t.Dispose();
    }

    [TestMethod]
    public void OnnxFileFolderAndStoredSourcesDescribeThemselvesAndAgreeOnWeights()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "src"));
        var fromOnnx = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache"));
        Assert.AreEqual(BaseModelKind.Onnx, fromOnnx.Kind);
        Assert.AreEqual(Path.GetFullPath(onnx), fromOnnx.Origin);
        Assert.AreEqual(Path.GetFullPath(vocab), fromOnnx.OriginVocabPath);
        Assert.AreEqual(fromOnnx.Origin, fromOnnx.Source);
        Assert.IsFalse(fromOnnx.IsSentenceEmbedding);
        var reference = fromOnnx.LoadWeights();

        // The same weights as a Hugging Face folder (encoder names, no prefix).
        string folder = Path.Combine(temp.Path, "hf");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), fromOnnx.Config.ToJson());
        File.Copy(vocab, Path.Combine(folder, "vocab.txt"));
        SafeTensors.WriteAtomic(Path.Combine(folder, "model.safetensors"), reference);
        var fromFolder = BaseModel.FromFolder(folder);
        Assert.AreEqual(BaseModelKind.Folder, fromFolder.Kind);
        Assert.AreEqual(folder, fromFolder.Origin);
        Assert.IsNull(fromFolder.OriginVocabPath);
        Assert.IsNull(fromFolder.CacheDirectory);
        Assert.IsFalse(fromFolder.IsSentenceEmbedding);
        File.WriteAllText(Path.Combine(folder, "modules.json"), "[]");
        Assert.IsTrue(fromFolder.IsSentenceEmbedding, "sentence-transformers files are looked up when asked");

        // Stored weights: the source takes the tensors it is given and hands out copies.
        var given = fromOnnx.LoadWeights();
        var stored = BaseModel.FromWeights("tiny", fromOnnx.Sha256, fromOnnx.Config, given, [], "vocab.txt",
                                           doLowerCase: true, fromOnnx.Origin);
        Assert.AreEqual(BaseModelKind.Stored, stored.Kind);
        Assert.AreEqual(fromOnnx.Sha256, stored.Sha256);
        Assert.AreEqual(fromOnnx.HasPooler, stored.HasPooler);
        Assert.IsNull(stored.CacheDirectory);

        var viaFolder = fromFolder.LoadWeights();
        var viaStored = stored.LoadWeights();
        try
        {
            AssertSameWeights(reference, viaFolder);
            AssertSameWeights(reference, viaStored);
            foreach (var t in viaStored.Values) t.Dispose();
            viaStored = stored.LoadWeights();
            AssertSameWeights(reference, viaStored);
        }
        finally { DisposeAll(reference, viaFolder, viaStored, given); }
    }

    [TestMethod]
    public void EachSourceKeepsWhatItWasCreatedWith()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "tiny-export"));
        string renamed = Path.Combine(temp.Path, "tiny-export", "model.onnx");
        File.Move(onnx, renamed);
        var model = BaseModel.FromOnnx(renamed, vocab, doLowerCase: false,
                                       cacheDirectory: Path.Combine(temp.Path, "cache"));
        Assert.AreEqual("tiny-export", model.Name, "a generic model.onnx is named after its folder");
        Assert.IsFalse(model.DoLowerCase);
        var first = model.LoadWeights(includePooler: false);
        var second = model.LoadWeights();
        try
        {
            Assert.IsFalse(first.Keys.Any(k => k.StartsWith("pooler.", StringComparison.Ordinal)));
            Assert.IsTrue(second.ContainsKey("pooler.dense.weight"));
            Assert.AreEqual(renamed, model.Origin);
            Assert.AreEqual(BaseModelKind.Onnx, model.Kind);
        }
        finally { DisposeAll(first, second); }
    }
}
