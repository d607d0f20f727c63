using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tokenization;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;

namespace Microsoft.ML.Peft.Tests.Onnx;

/// <summary>
/// ExportOnnx beyond per-method parity: the embedded MiniLM base, ensembles, the tokenizer and labels in the metadata,
/// and bad input (paths, streams, members that cannot share inputs) with atomic writes.
/// </summary>
[TestClass]
public sealed class OnnxExportTests
{
    [TestMethod]
    public void TheEmbeddedMiniLMWithLoraExportsLikeTheStage()
    {
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), BaseModel.MiniLM(), epochs: 1);
        AssertClose(StageScores(stage, data), OnnxScores(Export(stage), stage, data), 1e-4, "MiniLM + LoRA");
    }

    [TestMethod]
    public void AnEnsembleExportsItsWeightedAverage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var baseModel = TinyBase(temp.Path);
        var ml = new MLContext(1);
        var (lora, data) = Classifier(ml, new LoraConfig(), baseModel);
        var (adapter, _) = Classifier(ml, Default("adapter"), baseModel);
        using var ensemble = ml.Peft().Ensemble([lora, adapter], [0.7, 0.3]);
        var expected = EnsembleScores(ensemble, data);
        using var stream = new MemoryStream();
        ensemble.ExportOnnx(stream);
        AssertClose(expected, OnnxScores(stream.ToArray(), lora, data), 1e-4, "ensemble");
        // Not just member 0: the average differs from it.
        var first = StageScores(lora, data);
        Assert.IsGreaterThan(1e-3, expected.Zip(first, (e, f) => Math.Abs(e[0] - f[0])).Max());
    }

    [TestMethod]
    public void MembersThatTokenizeDifferentlyCannotExportTogether()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (a, _) = Classifier(ml, new LoraConfig(), TinyBase(Path.Combine(temp.Path, "a")));
        var (b, _) = Classifier(ml, new LoraConfig(), TinyBase(Path.Combine(temp.Path, "b")), pair: false,
            maxLength: 20);
        using var ensemble = ml.Peft().Ensemble([a, b]);
        string path = Path.Combine(temp.Path, "ensemble.onnx");
        var e = Assert.ThrowsExactly<NotSupportedException>(() => ensemble.ExportOnnx(path));
        StringAssert.Contains(e.Message, "member 1");
        Assert.IsFalse(File.Exists(path));
    }

    [TestMethod]
    public void TheMetadataRebuildsTheTokenizerAndNamesTheLabels()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, _) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path));
        var model = global::Onnx.ModelProto.Parser.ParseFrom(Export(stage));
        var meta = model.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.AreEqual("[\"0\",\"1\"]", meta["peft.labels"]);
        Assert.AreEqual("24", meta["peft.max_sequence_length"]);
        var files = meta.Where(kv => kv.Key.StartsWith("peft.tokenizer.file.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key["peft.tokenizer.file.".Length..], kv => Convert.FromBase64String(kv.Value));
        var rebuilt = TextTokenizer.Load(files, Enum.Parse<TextTokenizerKind>(meta["peft.tokenizer.kind"]));
        const string text = "They do not truly love this meal";
        CollectionAssert.AreEqual(stage.Tokenizer.EncodeSingle(text, 24).InputIds,
            rebuilt.EncodeSingle(text, 24).InputIds);
        Assert.AreEqual(17, model.OpsetImport.Single(o => o.Domain == "").Version);
        CollectionAssert.AreEqual(new[] { "input_ids", "attention_mask", "token_type_ids" },
            model.Graph.Input.Select(i => i.Name).ToArray());
        CollectionAssert.AreEqual(new[] { "Score", "PredictedLabel" },
            model.Graph.Output.Select(o => o.Name).ToArray());
    }

    [TestMethod]
    public void ExportingIntoAMissingFolderNamesThePath()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (stage, _) = Classifier(new MLContext(1), new LoraConfig(), TinyBase(temp.Path));
        string path = Path.Combine(temp.Path, "no-such-folder", "model.onnx");
        var e = Assert.ThrowsExactly<DirectoryNotFoundException>(() => stage.ExportOnnx(path));
        StringAssert.Contains(e.Message, path);
    }

    [TestMethod]
    public void AFailedWriteLeavesNoTemporaryFileAndTheTargetUntouched()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (stage, _) = Classifier(new MLContext(1), new LoraConfig(), TinyBase(temp.Path));
        string folder = Path.Combine(temp.Path, "out");
        // The target is a folder with a file in it: the final rename fails after the model was written.
        string target = Path.Combine(folder, "model.onnx");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "keep.txt"), "kept");
        var e = Assert.ThrowsExactly<IOException>(() => stage.ExportOnnx(target));
        StringAssert.Contains(e.Message, target);
        Assert.AreEqual("kept", File.ReadAllText(Path.Combine(target, "keep.txt")));
        CollectionAssert.AreEqual(new[] { "model.onnx" },
            Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).ToArray());

        // A good export over an existing file replaces it whole.
        string file = Path.Combine(folder, "ok.onnx");
        File.WriteAllText(file, "old");
        stage.ExportOnnx(file);
        Assert.AreEqual(Export(stage).Length, new FileInfo(file).Length);
    }

    [TestMethod]
    public void AReadOnlyStreamIsRefused()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (stage, _) = Classifier(new MLContext(1), new LoraConfig(), TinyBase(temp.Path));
        using var readOnly = new MemoryStream(new byte[16], writable: false);
        var e = Assert.ThrowsExactly<ArgumentException>(() => stage.ExportOnnx(readOnly));
        StringAssert.Contains(e.Message, "not writable");
    }

    [TestMethod]
    public void Int8ExportStoresInt8MatricesAndScoresCloseToTheStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path));
        using var stream = new MemoryStream();
        stage.ExportOnnx(stream, new OnnxExportOptions { QuantizeInt8 = true });
        var model = global::Onnx.ModelProto.Parser.ParseFrom(stream.ToArray());
        // Two layers × six matrices (query, key, value, attention output, intermediate, output).
        Assert.AreEqual(12, model.Graph.Initializer.Count(i =>
            i.DataType == (int)global::Onnx.TensorProto.Types.DataType.Int8));
        Assert.AreEqual(12, model.Graph.Node.Count(n => n.OpType == "MatMulInteger"));
        var expected = StageScores(stage, data);
        var actual = OnnxScores(stream.ToArray(), stage, data);
        double worst = expected.Zip(actual, (e, a) => e.Zip(a, (x, y) => Math.Abs(x - y)).Max()).Max();
        Assert.IsLessThan(0.05, worst, $"int8 moved a probability by {worst:G3}");
        Assert.IsGreaterThan(0.0, worst, "int8 scores equal float32 exactly: the weights were not quantised");
    }

    [TestMethod]
    public void WithTheTokenizerInsideTheModelTakesRawTextAndScoresLikeTheStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path), maxLength: 12);
        using var stream = new MemoryStream();
        stage.ExportOnnx(stream, new OnnxExportOptions { IncludeTokenizer = true });
        // Rows longer than 12 tokens are cut, as the stage cuts them; "" and unknown words go through too.
        var texts = data.GetColumn<string>("Sentence1").Concat(["", "zzz qqq", "I do not"]).ToArray();
        var rows = ml.Data.LoadFromEnumerable(texts.Select(t => new Stages.PairRow { Sentence1 = t }));
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
        options.RegisterOrtExtensions();
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(stream.ToArray(), options);
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<string>(texts, [texts.Length]);
        using var outputs = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("text", input)]);
        var flat = outputs.First(o => o.Name == "Score").AsEnumerable<float>().ToArray();
        var actual = Enumerable.Range(0, texts.Length).Select(r => flat[(2 * r)..(2 * r + 2)]).ToArray();
        AssertClose(StageScores(stage, rows), actual, 1e-4, "tokenizer inside the graph");
    }

    [TestMethod]
    public void TheTokenizerInsideTheModelRefusesPairs()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (stage, _) = Classifier(new MLContext(1), new LoraConfig(), TinyBase(temp.Path), pair: true);
        using var stream = new MemoryStream();
        var e = Assert.ThrowsExactly<NotSupportedException>(() =>
            stage.ExportOnnx(stream, new OnnxExportOptions { IncludeTokenizer = true }));
        StringAssert.Contains(e.Message, "pairs");
        Assert.AreEqual(0, stream.Length);
    }

    private static float[][] EnsembleScores(PeftEnsembleTransformer ensemble, IDataView data) =>
        StageScoresOf(ensemble.Transform(data));
}
