using System.Collections;
using Microsoft.ML.Peft.BaseModels;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

[TestClass]
public sealed class FromFolderTests
{
    /// <summary>Writes a Hugging Face-style folder from the tiny ONNX model's weights, as a task model checkpoint
    /// (bert. prefix, head tensors).</summary>
    private static (BaseModel Source, string Folder) MakeFolder(EmbeddedOnnx.TempFolder temp, string format,
        Action<Dictionary<string, Tensor>>? edit = null)
    {
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "src"));
        var source = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache"));
        string folder = Path.Combine(temp.Path, "hf");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), source.Config.ToJson());
        File.Copy(vocab, Path.Combine(folder, "vocab.txt"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{ "do_lower_case": false }""");

        var weights = source.LoadWeights();
        var checkpoint = weights.ToDictionary(kv => "bert." + kv.Key, kv => kv.Value);
        checkpoint["bert.embeddings.position_ids"] =
            arange(source.Config.MaxPositionEmbeddings, dtype: ScalarType.Int64).unsqueeze(0);
        checkpoint["cls.predictions.bias"] = zeros(source.Config.VocabSize);
        checkpoint["bert.encoder.layer.0.attention.output.LayerNorm.weight"] =
            checkpoint["bert.encoder.layer.0.attention.output.LayerNorm.weight"].to_type(ScalarType.Float16);
        edit?.Invoke(checkpoint);
        if (format == "safetensors")
            SafeTensors.WriteAtomic(Path.Combine(folder, "model.safetensors"), checkpoint);
        else
            TorchSharp.PyBridge.PyTorchPickler
                .PickleStateDict(Path.Combine(folder, "pytorch_model.bin"), new Hashtable(checkpoint));
        foreach (var t in checkpoint.Values) t.Dispose();
        return (source, folder);
    }

    [TestMethod]
    [DataRow("safetensors")]
    [DataRow("bin")]
    public void ReadsHuggingFaceFolder(string format)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (source, folder) = MakeFolder(temp, format);
        var model = BaseModel.FromFolder(folder);
        Assert.AreEqual("hf", model.Name);
        Assert.AreEqual(source.Config, model.Config);
        Assert.IsTrue(model.HasPooler);
        Assert.IsFalse(model.DoLowerCase, "tokenizer_config.json says cased");
        Assert.IsTrue(WeightCache.IsSha256(model.Sha256));
        Assert.IsTrue(model.Notes.Any(n => n.Contains("cls.predictions.bias")), string.Join(" | ", model.Notes));

        var expected = source.LoadWeights();
        var actual = model.LoadWeights();
        try
        {
            CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList());
            foreach (var (name, t) in expected)
            {
                Assert.AreEqual(ScalarType.Float32, actual[name].dtype, name);
                double tol = name == "encoder.layer.0.attention.output.LayerNorm.weight" ? 1e-3 : 0;
                Assert.IsTrue(t.allclose(actual[name], rtol: 0, atol: tol), name);
            }
        }
        finally
        {
            foreach (var t in expected.Values) t.Dispose();
            foreach (var t in actual.Values) t.Dispose();
        }

        using var encoder = model.CreateEncoder(withPooler: true);
        Assert.IsTrue(encoder.HasPooler);
    }

    [TestMethod]
    public void MissingAndMisshapedTensorsAreListed()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (_, folder) = MakeFolder(temp, "safetensors", c =>
        {
            c.Remove("bert.encoder.layer.1.attention.self.value.weight", out var removed);
            removed!.Dispose();
            c["bert.encoder.layer.0.intermediate.dense.weight"] = zeros(3, 3);
        });
        var e = Assert.ThrowsExactly<InvalidDataException>(() => BaseModel.FromFolder(folder));
        StringAssert.Contains(e.Message, "missing encoder.layer.1.attention.self.value.weight [8,8]");
        StringAssert.Contains(e.Message, "encoder.layer.0.intermediate.dense.weight is [3,3], expected [16,8]");
    }

    [TestMethod]
    public void MissingFilesAreNamed()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => BaseModel.FromFolder(Path.Combine(temp.Path, "nope")));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => BaseModel.FromFolder(temp.Path));
        StringAssert.Contains(e.Message, "config.json");
        File.WriteAllText(Path.Combine(temp.Path, "config.json"),
            new Microsoft.ML.Peft.Modeling.EncoderConfig().ToJson());
        e = Assert.ThrowsExactly<FileNotFoundException>(() => BaseModel.FromFolder(temp.Path));
        StringAssert.Contains(e.Message, "model.safetensors");
    }
}
