using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.Stages;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.BaseModels;

/// <summary>
/// The tensors in a model zip are written and read by the library's <see cref="SafeTensors"/>; zips written before
/// that (by TorchSharp.PyBridge, as the format-1 fixture) must read the same, and what the new writer stores must
/// still read with PyBridge's reader, since both follow the safetensors standard.
/// </summary>
[TestClass]
public sealed class SafeTensorsZipTests
{
    private const string Stage = "TransformerChain/Transform_001/";
    private static readonly string Fixture =
        Path.Combine(AppContext.BaseDirectory, "testdata", "format1-lora-tiny.zip");

    private static byte[] Entry(string zip, string name)
    {
        using var archive = ZipFile.OpenRead(zip);
        using var stream = archive.GetEntry(name)!.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static Dictionary<string, Tensor> ReadNew(byte[] bytes) =>
        SafeTensors.Read(new MemoryStream(bytes), "entry", SafeTensors.HashCheck.WhenRecorded);

    private static Dictionary<string, Tensor> ReadPyBridge(byte[] bytes) =>
        TorchSharp.PyBridge.Safetensors.LoadStateDict(new MemoryStream(bytes));

    private static void AssertSame(IReadOnlyDictionary<string, Tensor> expected,
                                   IReadOnlyDictionary<string, Tensor> actual)
    {
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList());
        foreach (var (name, t) in expected)
        {
            Assert.AreEqual(t.dtype, actual[name].dtype, name);
            CollectionAssert.AreEqual(t.shape, actual[name].shape, name);
            Assert.IsTrue(t.eq(actual[name]).all().item<bool>(), $"{name} differs");
        }
    }

    private static void DisposeAll(params Dictionary<string, Tensor>[] all)
    {
        foreach (var d in all)
            foreach (var t in d.Values) t.Dispose();
    }

    private static PeftTextTransformer StageOf(ITransformer model) =>
        ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single();

    [TestMethod]
    [DataRow("Trained.safetensors")]
    [DataRow("Base.safetensors")]
    public void FixtureEntriesWrittenByPyBridgeReadAlikeWithTheLibraryReader(string entry)
    {
        var bytes = Entry(Fixture, Stage + entry);
        var old = ReadPyBridge(bytes);
        var now = ReadNew(bytes);
        try
        {
            Assert.IsNotEmpty(now);
            AssertSame(old, now);
        }
        finally { DisposeAll(old, now); }
    }

    [TestMethod]
    public void TheStageScoresFromTheTensorsTheFixtureHolds()
    {
        var ml = new MLContext(1);
        var model = ml.Model.Load(Fixture, out _);
        using var stage = StageOf(model);
        var stored = ReadPyBridge(Entry(Fixture, Stage + "Trained.safetensors"));
        try
        {
            var trained = Microsoft.ML.Peft.Onnx.TorchWeights.ToTorch(stage.TrainedTensors());
            try { AssertSame(stored, trained); }
            finally { DisposeAll(trained); }
        }
        finally { DisposeAll(stored); }
    }

    [TestMethod]
    public void AZipSavedAgainReadsWithPyBridgeAndScoresAsBefore()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        string resaved = Path.Combine(temp.Path, "resaved.zip");
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(
            new[] { new TextRow { Label = "0", Text = "They do not truly love this meal" } });
        var model = ml.Model.Load(Fixture, out var schema);
        ml.Model.Save(model, schema, resaved);
        var before = model.Transform(data).GetColumn<float[]>("Score").Single();
        var after = new MLContext(1).Model.Load(resaved, out _).Transform(data).GetColumn<float[]>("Score").Single();
        CollectionAssert.AreEqual(before, after);

        foreach (var entry in new[] { "Trained.safetensors", "Base.safetensors" })
        {
            var written = Entry(resaved, Stage + entry);
            Assert.IsTrue(SafeTensors.ReadHeader(new MemoryStream(written), entry).Metadata
                .ContainsKey(SafeTensors.DataHashKey), $"{entry} carries the data checksum");
            var original = ReadPyBridge(Entry(Fixture, Stage + entry));
            var viaPyBridge = ReadPyBridge(written);
            var viaLibrary = ReadNew(written);
            try
            {
                AssertSame(original, viaPyBridge);
                AssertSame(original, viaLibrary);
            }
            finally { DisposeAll(original, viaPyBridge, viaLibrary); }
        }
    }

    [TestMethod]
    public void AStreamWithARecordedChecksumIsVerified()
    {
        using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var buffer = new MemoryStream();
        SafeTensors.Write(buffer, new Dictionary<string, Tensor> { ["a"] = a });
        var bytes = buffer.ToArray();
        bytes[^1] ^= 0x01;
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ReadNew(bytes));
        StringAssert.Contains(e.Message, "checksum");
        // Without a recorded checksum (older zips, other tools) there is nothing to verify against.
        var unverified = SafeTensors.Read(new MemoryStream(bytes), "entry", SafeTensors.HashCheck.None);
        DisposeAll(unverified);
    }

    [TestMethod]
    public void AStreamThatCannotSeekIsReadToo()
    {
        using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var b = tensor(new long[] { 3, -4 });
        using var buffer = new MemoryStream();
        SafeTensors.Write(buffer, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b });
        using var forwardOnly = new DeflateStream(new MemoryStream(Deflate(buffer.ToArray())),
                                                  CompressionMode.Decompress);
        Assert.IsFalse(forwardOnly.CanSeek);
        var back = SafeTensors.Read(forwardOnly, "entry", SafeTensors.HashCheck.Required);
        try
        {
            CollectionAssert.AreEqual(new[] { "a", "b" }, back.Keys.ToArray());
            Assert.IsTrue(back["a"].eq(a).all().item<bool>());
            Assert.IsTrue(back["b"].eq(b).all().item<bool>());
        }
        finally { DisposeAll(back); }
    }

    private static byte[] Deflate(byte[] bytes)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.Fastest, leaveOpen: true)) deflate.Write(bytes);
        return output.ToArray();
    }
}
