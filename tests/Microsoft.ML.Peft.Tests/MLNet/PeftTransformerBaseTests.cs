using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.MLNet;

[TestClass]
public sealed class PeftTransformerBaseTests
{
    private static readonly string[] OutputColumns = ["Score", "PredictedLabel"];
    private string _dir = null!;

    public TestContext TestContext { get; set; } = null!;

    [TestInitialize]
    public void CreateFolder() => _dir = Directory.CreateTempSubdirectory("peft-mlnet-").FullName;

    [TestCleanup]
    public void DeleteFolder()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [TestMethod]
    public void Pipeline_TransformEvaluateAndPredictionEngine_Work()
    {
        var (ml, model, _) = Fit();
        var testRows = MLNetTestData.Rows(150, seed: 2);
        var scored = model.Transform(MLNetTestData.Load(ml, testRows));

        // Score carries the class names (from Label's KeyValues) as SlotNames; PredictedLabel became text again.
        var slotNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Score"].Annotations.GetValue(PeftAnnotations.SlotNamesKind, ref slotNames);
        var classNames = slotNames.DenseValues().Select(v => v.ToString()).ToArray();
        CollectionAssert.AreEquivalent(new[] { "sport", "weather", "food" }, classNames);
        Assert.IsInstanceOfType<TextDataViewType>(scored.Schema["PredictedLabel"].Type);

        var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Label", scoreColumnName: "Score",
            predictedLabelColumnName: "PredictedLabel");
        Assert.IsGreaterThan(0.9, metrics.MicroAccuracy, $"micro-accuracy {metrics.MicroAccuracy}");
        Assert.AreEqual(3, metrics.ConfusionMatrix.NumberOfClasses);

        var predicted = ml.Data.CreateEnumerable<TextPrediction>(scored, reuseRowObject: false).ToList();
        Assert.HasCount(testRows.Count, predicted);
        int correct = predicted.Zip(testRows).Count(p => p.First.PredictedLabel == p.Second.Label);
        Assert.IsGreaterThan(0.9 * testRows.Count, correct);
        // The predicted label is the class with the highest score.
        foreach (var p in predicted)
            Assert.AreEqual(classNames[Array.IndexOf(p.Score, p.Score.Max())], p.PredictedLabel);

        // PredictionEngine: one row at a time, same answers as the batched cursor (up to float rounding of matmul).
        using var engine = ml.Model.CreatePredictionEngine<TextRow, TextPrediction>(model);
        for (int i = 0; i < 20; i++)
        {
            var single = engine.Predict(testRows[i]);
            Assert.AreEqual(predicted[i].PredictedLabel, single.PredictedLabel, $"row {i}");
            Assert.HasCount(3, single.Score);
            for (int c = 0; c < 3; c++)
                Assert.AreEqual(predicted[i].Score[c], single.Score[c], 1e-5f, $"row {i} class {c}");
        }
    }

    [TestMethod]
    public void PredictionEngine_ScoresOneRowPerPredict_OncePerRow()
    {
        var (ml, model, scorer) = Fit();
        var rows = MLNetTestData.Rows(5, seed: 3);
        using var engine = ml.Model.CreatePredictionEngine<TextRow, TextPrediction>(model);
        scorer.ObservedBatchSizes.Clear();
        var results = rows.Select(engine.Predict).Select(p => MLNetTestData.Describe(p.Score)).ToList();

        // Score and PredictedLabel are both read per prediction, yet each row is scored once, alone.
        CollectionAssert.AreEqual(Enumerable.Repeat(1, rows.Count).ToArray(), scorer.ObservedBatchSizes.ToArray());
        // A new input gives a new answer (the row caches per input position, not forever).
        Assert.IsGreaterThan(1, results.Distinct().Count());
    }

    [TestMethod]
    public void Transform_ScoresInBatchesOfBatchSize()
    {
        var ml = new MLContext(seed: 1);
        var rows = MLNetTestData.Rows(100, seed: 4);
        var mapped = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(MLNetTestData.Load(ml, MLNetTestData.Rows(300, seed: 1)));
        var data = mapped.Transform(MLNetTestData.Load(ml, rows));
        var batched = new TinyTextScorerEstimator(ml, batchSize: 32).Fit(data);
        var single = new TinyTextScorerEstimator(ml, batchSize: 1).Fit(data);

        var batchedScores = MLNetTestData.Scores(batched.Transform(data));
        CollectionAssert.AreEqual(new[] { 32, 32, 32, 4 }, batched.ObservedBatchSizes.ToArray());

        var singleScores = MLNetTestData.Scores(single.Transform(data));
        Assert.IsTrue(single.ObservedBatchSizes.All(n => n == 1));
        Assert.HasCount(100, single.ObservedBatchSizes);
        Assert.HasCount(100, batchedScores);
        for (int i = 0; i < 100; i++)
        {
            for (int c = 0; c < 3; c++)
                Assert.AreEqual(singleScores[i][c], batchedScores[i][c], 1e-5f, $"row {i} class {c}");
        }

        // A cursor that reads only input columns never runs the network.
        batched.ObservedBatchSizes.Clear();
        var view = batched.Transform(data);
        using (var cursor = view.GetRowCursor([view.Schema["Text"]]))
        {
            var getter = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["Text"]);
            ReadOnlyMemory<char> text = default;
            int n = 0;
            while (cursor.MoveNext())
            {
                getter(ref text);
                Assert.AreEqual(rows[n++].Text, text.ToString());
            }
            Assert.AreEqual(100, n);
        }
        Assert.IsEmpty(batched.ObservedBatchSizes);
    }

    [TestMethod]
    public void Cursor_PassesInputColumnsThroughAlignedWithTheirScores()
    {
        // Inputs are read ahead of the row being served; passed-through values must still belong to that row.
        var (ml, model, _) = Fit(batchSize: 7);
        var rows = MLNetTestData.Rows(50, seed: 5);
        var scored = model.Transform(MLNetTestData.Load(ml, rows));
        var texts = scored.GetColumn<string>("Text").ToList();
        CollectionAssert.AreEqual(rows.Select(r => r.Text).ToList(), texts);

        var ids = new List<DataViewRowId>();
        using (var cursor = scored.GetRowCursor(scored.Schema))
        {
            var idGetter = cursor.GetIdGetter();
            DataViewRowId id = default;
            while (cursor.MoveNext())
            {
                Assert.AreEqual(ids.Count, cursor.Position);
                idGetter(ref id);
                ids.Add(id);
            }
        }
        Assert.HasCount(50, ids);
        Assert.HasCount(50, ids.Distinct());
    }

    [TestMethod]
    public void ParallelCursors_EachOwnTheirBatch_AndAgreeWithSerial()
    {
        var (ml, model, scorer) = Fit(batchSize: 8);
        var rows = MLNetTestData.Rows(400, seed: 6);
        var scored = model.Transform(ml.Data.Cache(MLNetTestData.Load(ml, rows)));
        var serial = RowFormatter.Format(scored, ["Text", "Score", "PredictedLabel"]);

        // Several cursors at once on several threads.
        var perThread = new List<string>[4];
        Parallel.For(0, perThread.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            t => perThread[t] = RowFormatter.Format(scored, ["Text", "Score", "PredictedLabel"]));
        foreach (var lines in perThread)
            CollectionAssert.AreEqual(serial, lines);

        // A cursor set: every row once, each with its own scores.
        var columns = new[] { "Text", "Score", "PredictedLabel" }.Select(n => scored.Schema[n]).ToArray();
        var cursors = scored.GetRowCursorSet(columns, 3);
        var fromSet = new System.Collections.Concurrent.ConcurrentBag<string>();
        try
        {
            Parallel.ForEach(cursors, cursor =>
            {
                var text = cursor.GetGetter<ReadOnlyMemory<char>>(columns[0]);
                var score = cursor.GetGetter<VBuffer<float>>(columns[1]);
                var label = cursor.GetGetter<ReadOnlyMemory<char>>(columns[2]);
                ReadOnlyMemory<char> t = default, l = default;
                VBuffer<float> s = default;
                while (cursor.MoveNext())
                {
                    text(ref t);
                    score(ref s);
                    label(ref l);
                    fromSet.Add($"{t}\t{MLNetTestData.Describe(s.DenseValues().ToArray())}\t{l}");
                }
            });
        }
        finally
        {
            foreach (var cursor in cursors)
                cursor.Dispose();
        }
        CollectionAssert.AreEquivalent(serial, fromSet.ToList());
        TestContext.WriteLine($"cursor set size: {cursors.Length}; batches: {scorer.ObservedBatchSizes.Count}");
    }

    [TestMethod]
    public void GetOutputSchema_DeclaresTypesAndAnnotations_AndRejectsBadInput()
    {
        var (ml, _, scorer) = Fit();
        var input = ml.Data.LoadFromEnumerable(new[] { new { Text = "a" } }).Schema;
        var output = scorer.GetOutputSchema(input);

        var score = output["Score"];
        Assert.AreEqual(new VectorDataViewType(NumberDataViewType.Single, 3), score.Type);
        Assert.AreEqual(input.Count + 2, output.Count);
        var predicted = output["PredictedLabel"];
        Assert.AreEqual(3UL, ((KeyDataViewType)predicted.Type).Count);
        var keyValues = default(VBuffer<ReadOnlyMemory<char>>);
        predicted.Annotations.GetValue(PeftAnnotations.KeyValuesKind, ref keyValues);
        CollectionAssert.AreEqual(scorer.Labels.ToArray(), keyValues.DenseValues().Select(v => v.ToString()).ToArray());
        var kind = default(ReadOnlyMemory<char>);
        score.Annotations.GetValue(PeftAnnotations.ScoreColumnKindKind, ref kind);
        Assert.AreEqual(PeftAnnotations.MulticlassClassification, kind.ToString());

        var missing = ml.Data.LoadFromEnumerable(new[] { new { Other = "a" } }).Schema;
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => scorer.GetOutputSchema(missing));
        StringAssert.Contains(ex.Message, "'Text'");
        var wrongType = ml.Data.LoadFromEnumerable(new[] { new { Text = 1f } }).Schema;
        ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => scorer.GetOutputSchema(wrongType));
        StringAssert.Contains(ex.Message, "must be text");
    }

    [TestMethod]
    public void SaveLoad_SameProcess_GivesIdenticalOutputs()
    {
        var (ml, model, scorer) = Fit();
        var data = MLNetTestData.Load(ml, MLNetTestData.Rows(80, seed: 7));
        string path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, data.Schema, path);

        using (var zip = ZipFile.OpenRead(path))
            Assert.IsTrue(zip.Entries.Any(e =>
                e.FullName.EndsWith("/" + TinyTextScorer.WeightsStream, StringComparison.Ordinal)),
                "weights stream in the zip");

        var loaded = ml.Model.Load(path, out var schema);
        var loadedScorer = ((IEnumerable<ITransformer>)loaded).OfType<TinyTextScorer>().Single();
        Assert.AreNotSame(scorer, loadedScorer);
        Assert.AreEqual(scorer.BatchSize, loadedScorer.BatchSize);
        CollectionAssert.AreEqual(scorer.InputColumnNames.ToArray(), loadedScorer.InputColumnNames.ToArray());
        CollectionAssert.AreEqual(scorer.Labels.ToArray(), loadedScorer.Labels.ToArray());
        CollectionAssert.AreEqual(scorer.GetWeights(), loadedScorer.GetWeights());
        Assert.AreEqual(data.Schema.Count, schema.Count);

        var expected = RowFormatter.Format(model.Transform(data), OutputColumns);
        var actual = RowFormatter.Format(loaded.Transform(data), OutputColumns);
        Assert.HasCount(80, actual);
        CollectionAssert.AreEqual(expected, actual);
        Assert.IsGreaterThan(0, loadedScorer.ObservedBatchSizes.Count, "the loaded scorer did the scoring");
    }

    [TestMethod]
    public void SaveLoad_FreshProcess_GivesIdenticalOutputs()
    {
        var (ml, model, _) = Fit();
        var rows = MLNetTestData.Rows(60, seed: 8);
        string dataPath = Path.Combine(_dir, "data.tsv");
        MLNetTestData.WriteTsv(dataPath, rows);
        var data = MLNetTestData.LoadTsv(ml, dataPath);
        string modelPath = Path.Combine(_dir, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, modelPath);
        var expected = RowFormatter.Format(model.Transform(data), OutputColumns);

        string testAssembly = typeof(TinyTextScorer).Assembly.Location;
        var actual = RunProbe("--assembly", testAssembly, modelPath, dataPath, "Score", "PredictedLabel");
        Assert.HasCount(60, actual);
        CollectionAssert.AreEqual(expected, actual);
        // Sanity: the outputs are real predictions, not constants.
        Assert.IsGreaterThan(1, actual.Select(l => l.Split('\t')[1]).Distinct().Count());
    }

    [TestMethod]
    public void Load_TruncatedZip_ThrowsClearError()
    {
        var (ml, model, _) = Fit();
        var schema = MLNetTestData.Load(ml, MLNetTestData.Rows(1, seed: 9)).Schema;
        string path = Path.Combine(_dir, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, schema, path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length * 2 / 3)]);

        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftModelIO.Load(ml, path, out _));
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "truncated");
        Assert.IsNotNull(ex.InnerException);
        TestContext.WriteLine(ex.Message);
    }

    [TestMethod]
    public void Load_CorruptedWeightsStream_ThrowsClearError()
    {
        var (ml, model, _) = Fit();
        var schema = MLNetTestData.Load(ml, MLNetTestData.Rows(1, seed: 9)).Schema;
        string path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, schema, path);

        // Flip one byte in the middle of the weights (a valid zip entry, a parseable tensor, wrong numbers).
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            var entry = zip.Entries
                .Single(e => e.FullName.EndsWith("/" + TinyTextScorer.WeightsStream, StringComparison.Ordinal));
            byte[] content;
            using (var s = entry.Open())
            using (var m = new MemoryStream())
            {
                s.CopyTo(m);
                content = m.ToArray();
            }
            content[content.Length / 2] ^= 0x40;
            string name = entry.FullName;
            entry.Delete();
            using var w = zip.CreateEntry(name).Open();
            w.Write(content);
        }

        // Straight through ML.NET, and through the helper that names the file.
        var raw = Assert.Throws<Exception>(() => ml.Model.Load(path, out _));
        var inner = Flatten(raw).OfType<PeftModelFormatException>().FirstOrDefault();
        Assert.IsNotNull(inner, $"expected a PeftModelFormatException inside {raw}");
        StringAssert.Contains(inner.Message, TinyTextScorer.WeightsStream);
        StringAssert.Contains(inner.Message, "corrupted");

        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftModelIO.Load(ml, path, out _));
        StringAssert.Contains(ex.Message, path);
        StringAssert.Contains(ex.Message, "stream 'Weights.bin' is corrupted");
        TestContext.WriteLine(ex.Message);
    }

    [TestMethod]
    public void Load_MissingWeightsStream_ThrowsClearError()
    {
        var (ml, model, _) = Fit();
        var schema = MLNetTestData.Load(ml, MLNetTestData.Rows(1, seed: 9)).Schema;
        string path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, schema, path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            zip.Entries.Single(e => e.FullName.EndsWith("/" + TinyTextScorer.WeightsStream, StringComparison.Ordinal))
                .Delete();

        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftModelIO.Load(ml, path, out _));
        StringAssert.Contains(ex.Message, "stream 'Weights.bin' is listed in the model header but missing");
    }

    [TestMethod]
    public void SaveAtomic_ReplacesFile_AndLeavesNoTemporaryFiles()
    {
        var (ml, model, _) = Fit();
        var schema = MLNetTestData.Load(ml, MLNetTestData.Rows(1, seed: 9)).Schema;
        string path = Path.Combine(_dir, "model.zip");
        File.WriteAllText(path, "old content");
        PeftModelIO.SaveAtomic(ml, model, schema, path);

        Assert.AreNotEqual("old content", File.ReadAllText(path));
        var loaded = PeftModelIO.Load(ml, path, out var loadedSchema);
        Assert.AreEqual(1, ((IEnumerable<ITransformer>)loaded).OfType<TinyTextScorer>().Count());
        Assert.AreEqual(schema.Count, loadedSchema.Count);
        CollectionAssert.AreEqual(new[] { "model.zip" }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());
    }

    [TestMethod]
    public void SaveAtomic_FailureMidSave_KeepsPreviousFile_AndLeavesNoTemporaryFiles()
    {
        var (ml, model, scorer) = Fit();
        var schema = MLNetTestData.Load(ml, MLNetTestData.Rows(1, seed: 9)).Schema;
        string path = Path.Combine(_dir, "model.zip");
        string fresh = Path.Combine(_dir, "never.zip");
        PeftModelIO.SaveAtomic(ml, model, schema, path);
        byte[] before = File.ReadAllBytes(path);

        // The weights are already in the zip when the failure happens.
        scorer.AfterStreamWritten = _ => throw new IOException("simulated disk failure");
        var ex = Assert.ThrowsExactly<IOException>(() => PeftModelIO.SaveAtomic(ml, model, schema, path));
        StringAssert.Contains(ex.Message, "simulated disk failure");
        Assert.ThrowsExactly<IOException>(() => PeftModelIO.SaveAtomic(ml, model, schema, fresh));

        CollectionAssert.AreEqual(before, File.ReadAllBytes(path));
        Assert.IsFalse(File.Exists(fresh));
        CollectionAssert.AreEqual(new[] { "model.zip" }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());

        // The surviving file is still a loadable model.
        scorer.AfterStreamWritten = null;
        Assert.IsNotNull(PeftModelIO.Load(ml, path, out _));
    }

    [TestMethod]
    public void TensorIO_RoundTripsDtypesAndShapes_AndRejectsGarbage()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new[]
        {
            torch.randn(3, 5, generator: new torch.Generator(1)),
            torch.randn(2, 3, 4, generator: new torch.Generator(2)).to(torch.bfloat16),
            torch.arange(7L),
            torch.tensor(2.5f),
        };
        foreach (var tensor in tensors)
        {
            using var stream = new MemoryStream();
            using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
                PeftTensorIO.Write(writer, tensor);
            stream.Position = 0;
            using var reader = new BinaryReader(stream);
            var back = PeftTensorIO.Read(reader);
            Assert.AreEqual(tensor.dtype, back.dtype);
            CollectionAssert.AreEqual(tensor.shape, back.shape);
            Assert.IsTrue(tensor.eq(back).all().item<bool>(), $"{tensor.dtype} values differ");
        }

        using var garbage = new BinaryReader(new MemoryStream(new byte[64]));
        Assert.ThrowsExactly<PeftModelFormatException>(() => PeftTensorIO.Read(garbage));
    }

    [TestMethod]
    public void ModelSignature_ValidatesLengths()
    {
        Assert.ThrowsExactly<ArgumentException>(() => new PeftModelSignature("Ok", "SEVEN77"));
        Assert.ThrowsExactly<ArgumentException>(() => new PeftModelSignature(new string('x', 25), "EIGHT888"));
        var signature = new PeftModelSignature(new string('x', 24), "EIGHT888", formatVersion: 0x00010002,
            oldestReadableVersion: 0x00010001);
        Assert.AreEqual(0x00010002u, signature.MinimumReaderVersion);
        Assert.AreEqual(0x00010001u, signature.OldestReadableVersion);
    }

    private static (MLContext Ml, ITransformer Model, TinyTextScorer Scorer) Fit(
        int batchSize = PeftTransformerBase.DefaultBatchSize)
    {
        var ml = new MLContext(seed: 1);
        var train = MLNetTestData.Load(ml, MLNetTestData.Rows(300, seed: 1));
        var model = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(new TinyTextScorerEstimator(ml, batchSize: batchSize))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"))
            .Fit(train);
        return (ml, model, model.OfType<TinyTextScorer>().Single());
    }

    private static IEnumerable<Exception> Flatten(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
            yield return e;
    }

    /// <summary>Runs ModelLoadProbe with <paramref name="args"/> in a fresh process; returns its output lines and
    /// fails the test if it fails or takes over 3 minutes.</summary>
    internal static List<string> RunProbe(params string[] args)
    {
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in args.Prepend(ProbePath())) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.IsTrue(process.WaitForExit(TimeSpan.FromMinutes(3)), "probe timed out");
        Assert.AreEqual(0, process.ExitCode, $"probe failed: {stderr.Result}");
        return stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
    }

    internal static string ProbePath()
    {
        string? configured = typeof(PeftTransformerBaseTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "ModelLoadProbePath")?.Value;
        Assert.IsNotNull(configured, "ModelLoadProbePath assembly metadata missing");
        string path = Path.GetFullPath(configured);
        Assert.IsTrue(File.Exists(path), $"ModelLoadProbe not built at {path}");
        return path;
    }

    internal static string DotnetHost()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
            return host;
        string? root = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        if (!string.IsNullOrEmpty(root) && File.Exists(Path.Combine(root, "dotnet")))
            return Path.Combine(root, "dotnet");
        return "dotnet";
    }
}
