using Microsoft.ML.Peft.Testing;
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Methods.Full;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.MLNet;

namespace Microsoft.ML.Peft.Tests.Stages;

[TestClass]
public sealed class LoraTextClassificationTests
{
    private static MLContext _ml = null!;
    private static ITransformer _model = null!;
    private static IDataView _test = null!;
    private static string _dir = null!;

    private static IEstimator<ITransformer> Pipeline(MLContext ml, int epochs = 4) =>
        ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = epochs, BatchSize = 16,
                LearningRate = 2e-3,
                MaxSequenceLength = 32, Method = new LoraConfig { Rank = 8, Alpha = 16 },
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabelValue", "PredictedLabel"));

    [ClassInitialize]
    public static void Train(TestContext _)
    {
        _dir = Path.Combine(Path.GetTempPath(), "peft-stage-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _ml = new MLContext(seed: 1);
        _model = Pipeline(_ml).Fit(StageTestData.Load(_ml, StageTestData.Negation(320, seed: 1)));
        _test = StageTestData.Load(_ml, StageTestData.Negation(200, seed: 2));
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static PeftTextTransformer Stage(ITransformer pipeline) =>
        ((IEnumerable<ITransformer>)pipeline).OfType<PeftTextTransformer>().Single();

    [TestMethod]
    public void LearnsNegationThatBagOfWordsCannot()
    {
        var metrics = _ml.MulticlassClassification.Evaluate(_model.Transform(_test));
        var baseline = _ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(_ml.Transforms.Text.FeaturizeText("Features", "Text"))
            .Append(_ml.MulticlassClassification.Trainers.SdcaMaximumEntropy())
            .Fit(StageTestData.Load(_ml, StageTestData.Negation(320, seed: 1)));
        var baselineMetrics = _ml.MulticlassClassification.Evaluate(baseline.Transform(_test));
        Console.WriteLine($"LoRA accuracy {metrics.MicroAccuracy:F3}, log-loss {metrics.LogLoss:F3}; " +
            $"FeaturizeText+SDCA {baselineMetrics.MicroAccuracy:F3}");
        Assert.IsGreaterThan(0.85, metrics.MicroAccuracy);
        Assert.IsGreaterThan(baselineMetrics.MicroAccuracy + 0.15, metrics.MicroAccuracy);
        Assert.IsTrue(double.IsFinite(metrics.LogLoss) && metrics.LogLoss < baselineMetrics.LogLoss);
    }

    [TestMethod]
    public void OutputsFollowMulticlassConventions()
    {
        var scored = _model.Transform(_test);
        var score = scored.Schema["Score"];
        Assert.AreEqual(2, ((VectorDataViewType)score.Type).Size);
        VBuffer<ReadOnlyMemory<char>> slots = default;
        score.GetSlotNames(ref slots);
        var names = slots.DenseValues().Select(s => s.ToString()).ToArray();
        CollectionAssert.AreEquivalent(new[] { "positive", "negative" }, names);
        var predicted = scored.Schema["PredictedLabel"];
        Assert.IsInstanceOfType<KeyDataViewType>(predicted.Type);
        VBuffer<ReadOnlyMemory<char>> predictedNames = default;
        predicted.GetKeyValues(ref predictedNames);
        CollectionAssert.AreEqual(names, predictedNames.DenseValues().Select(s => s.ToString()).ToArray());

        var rows = _ml.Data.CreateEnumerable<ScoredRow>(scored, reuseRowObject: false).Take(50).ToList();
        foreach (var r in rows)
        {
            Assert.AreEqual(1f, r.Score.Sum(), 1e-4f);
            Assert.AreEqual(names[Array.IndexOf(r.Score, r.Score.Max())], r.PredictedLabelValue);
        }
    }

    [TestMethod]
    public void PredictionEngineMatchesBatchScoring()
    {
        var engine = _ml.Model.CreatePredictionEngine<TextRow, ScoredRow>(_model);
        var batch = _ml.Data.CreateEnumerable<ScoredRow>(_model.Transform(_test), reuseRowObject: false).Take(20)
            .ToList();
        var inputs = StageTestData.Negation(200, seed: 2).Take(20).ToList();
        for (int i = 0; i < 20; i++)
        {
            var single = engine.Predict(inputs[i]);
            Assert.AreEqual(batch[i].PredictedLabelValue, single.PredictedLabelValue);
            for (int c = 0; c < 2; c++) Assert.AreEqual(batch[i].Score[c], single.Score[c], 1e-5f);
        }
    }

    [TestMethod]
    public void ReportsTrainableParameters()
    {
        var stage = Stage(_model);
        // r = 8 on query and value of 6 layers × hidden 384, plus the 2-class head.
        Assert.AreEqual(6L * 2 * (384 * 8 + 8 * 384) + 384 * 2 + 2, stage.TrainableParameterCount);
        Assert.IsGreaterThan(22_000_000L, stage.TotalParameterCount);
        Assert.IsLessThan(1.0, stage.TrainablePercent);
        Assert.IsTrue(stage.IsMerged);
        Assert.IsNotNull(stage.TrainingReport);
    }

    [TestMethod]
    public void SaveAndLoadInSameProcessGiveIdenticalScoresAndASmallZip()
    {
        string path = Path.Combine(_dir, "same.zip");
        _ml.Model.Save(_model, _test.Schema, path);
        Assert.IsLessThan(1_000_000L, new FileInfo(path).Length, "an embedded base must not be stored in the zip");
        var loaded = new MLContext(seed: 5).Model.Load(path, out _);
        var expected = RowFormatter.Format(_model.Transform(_test), ["Score", "PredictedLabel"]);
        var actual = RowFormatter.Format(loaded.Transform(_test), ["Score", "PredictedLabel"]);
        CollectionAssert.AreEqual(expected, actual);
    }

    [TestMethod]
    public void LoadsInAFreshProcessWithIdenticalScores()
    {
        string modelPath = Path.Combine(_dir, "fresh.zip");
        string dataPath = Path.Combine(_dir, "fresh.tsv");
        var rows = StageTestData.Negation(40, seed: 3);
        // The probe reads the model's input columns in schema order: Label, Text.
        File.WriteAllLines(dataPath, rows.Select(r => $"{r.Label}\t{r.Text}"));
        var data = _ml.Data.LoadFromTextFile(dataPath,
            [new TextLoader.Column("Label", DataKind.String, 0), new TextLoader.Column("Text", DataKind.String, 1)],
            separatorChar: '\t', allowQuoting: false);
        _ml.Model.Save(_model, data.Schema, modelPath);
        var expected = RowFormatter.Format(_model.Transform(data), ["Score", "PredictedLabelValue"]);

        var start = new ProcessStartInfo(PeftTransformerBaseTests.DotnetHost()) { RedirectStandardOutput = true,
            RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { PeftTransformerBaseTests.ProbePath(), modelPath, dataPath, "Score",
            "PredictedLabelValue" }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.IsTrue(process.WaitForExit(TimeSpan.FromMinutes(3)), "probe timed out");
        Assert.AreEqual(0, process.ExitCode, stderr.Result);
        var actual = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r'))
            .ToList();
        CollectionAssert.AreEqual(expected, actual);
        Assert.IsGreaterThan(1, actual.Select(l => l.Split('\t')[^1]).Distinct().Count());
    }

    [TestMethod]
    public void SameSeedGivesTheSameModel()
    {
        List<string> Run(int seed)
        {
            var ml = new MLContext(seed);
            var data = StageTestData.Load(ml, StageTestData.Negation(64, 4));
            var model = Pipeline(ml, epochs: 1).Fit(data);
            return RowFormatter.Format(model.Transform(data), ["Score"]);
        }
        var a = Run(7);
        CollectionAssert.AreEqual(a, Run(7));
        CollectionAssert.AreNotEqual(a, Run(8));
    }

    [TestMethod]
    public void NullEmptyAndVeryLongTextAreScored()
    {
        var rows = new List<TextRow>
        {
            new() { Label = "positive", Text = null }, new() { Label = "negative", Text = "" },
            new() { Label = "positive",
                Text = string.Join(' ', Enumerable.Repeat("I do really love this movie", 3000)) },
        };
        var scored = _ml.Data.CreateEnumerable<ScoredRow>(_model.Transform(StageTestData.Load(_ml, rows)),
            reuseRowObject: false).ToList();
        Assert.HasCount(3, scored);
        foreach (var r in scored) Assert.AreEqual(1f, r.Score.Sum(), 1e-4f);
    }

    [TestMethod]
    public void MergedWeightsArePlainBertWeightsThatScoreLikeTheStage()
    {
        var stage = Stage(_model);
        var weights = stage.GetMergedWeights();
        try
        {
            Assert.IsTrue(weights.ContainsKey("bert.encoder.layer.0.attention.self.query.weight"));
            Assert.IsTrue(weights.ContainsKey("classifier.weight"));
            Assert.IsFalse(weights.Keys.Any(k => k.Contains("lora_") || k.Contains("base_layer")),
                string.Join(", ", weights.Keys.Where(k => k.Contains("lora_") || k.Contains("base_layer")).Take(3)));
            // A plain encoder + head (full fine-tuning attaches nothing) loaded with them scores as the stage does.
            var encoder = stage.Model.Encoder;
            using var plain =
                PeftModel.Create(new BertModel(encoder.Config, encoder.HasPooler), new FullFineTuningConfig(),
                2, stage.Model.Pooling, 0.0);
            var (_, unexpected) = plain.load_state_dict(weights, strict: true);
            Assert.IsEmpty(unexpected);
            plain.to(stage.Model.classifier.weight!.dtype);
            plain.eval();
            string[] texts =
                ["I do not really love this movie", "We do simply adore this book", "They do hate this car"];
            using var batch = torch.NewDisposeScope();
            var (ids, mask, types) = stage.Tokenizer.EncodeBatch(texts, null, 32).ToTensors();
            using var noGrad = torch.no_grad();
            var expected = plain.forward(ids, mask, types).to(torch.ScalarType.Float32).softmax(-1).data<float>()
                .ToArray();
            var rows = texts.Select(t => new TextRow { Label = "positive", Text = t }).ToList();
            var scored = _ml.Data.CreateEnumerable<ScoredRow>(_model.Transform(StageTestData.Load(_ml, rows)),
                reuseRowObject: false).ToList();
            for (int i = 0; i < texts.Length; i++)
                for (int c = 0; c < 2; c++)
                    Assert.AreEqual(expected[i * 2 + c], scored[i].Score[c], 2e-3f, $"row {i} class {c}");
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    public sealed class ScoredRow
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabelValue { get; set; } = "";
    }
}
