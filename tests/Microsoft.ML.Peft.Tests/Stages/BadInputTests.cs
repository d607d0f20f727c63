using Microsoft.ML;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Tests.Stages;

[TestClass]
public sealed class BadInputTests
{
    private static PeftTextClassificationOptions Options() => new()
    {
        LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16, MaxSequenceLength = 16,
    };

    public sealed class NumericRow
    {
        public string Label { get; set; } = "";
        public float Text { get; set; }
    }

    [TestMethod]
    public void LabelThatIsNotAKeySaysToAddMapValueToKey()
    {
        var ml = new MLContext(1);
        var data = StageTestData.Load(ml, StageTestData.Negation(10, 1));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(Options())
            .Fit(data));
        StringAssert.Contains(e.Message, "MapValueToKey");
        StringAssert.Contains(e.Message, "'Label'");
        var s = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(Options())
            .GetOutputSchema(SchemaShape.Create(data.Schema)));
        StringAssert.Contains(s.Message, "MapValueToKey");
    }

    [TestMethod]
    public void MissingAndNonTextColumnsAreNamed()
    {
        var ml = new MLContext(1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(10, 1)))
            .Transform(StageTestData.Load(ml, StageTestData.Negation(10, 1)));
        var options = Options();
        options.Sentence1ColumnName = "Review";
        var missing =
            Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(options).Fit(data));
        StringAssert.Contains(missing.Message, "'Review'");

        var numeric = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(ml.Data.LoadFromEnumerable(new[] { new NumericRow { Label = "a", Text = 1 } }))
            .Transform(ml.Data.LoadFromEnumerable(new[] { new NumericRow { Label = "a", Text = 1 },
                new NumericRow { Label = "b", Text = 2 } }));
        var wrongType = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(Options())
            .Fit(numeric));
        StringAssert.Contains(wrongType.Message, "'Text'");
        StringAssert.Contains(wrongType.Message, "Text (string)");
    }

    [TestMethod]
    public void EmptyAndSingleClassTrainingSetsAreRejected()
    {
        var ml = new MLContext(1);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(50, 1)));
        var empty = toKey.Transform(StageTestData.Load(ml, []));
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Peft().TextClassification(Options())
            .Fit(empty));
        StringAssert.Contains(e.Message, "no rows");

        var oneClass =
            toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(50, 1).Where(r => r.Label == "positive")));
        var s = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Peft().TextClassification(Options())
            .Fit(oneClass));
        StringAssert.Contains(s.Message, "only one class");
        StringAssert.Contains(s.Message, "positive");
    }

    [TestMethod]
    public void RowsWithMissingLabelsAreSkippedAndCounted()
    {
        var ml = new MLContext(1);
        var messages = new List<string>();
        // Through reflection: the publicized ML.NET reference makes 'ml.Log' ambiguous at compile time.
        typeof(MLContext).GetEvent("Log")!.AddEventHandler(ml,
            new EventHandler<LoggingEventArgs>((_, e) => { lock (messages) messages.Add(e.Message); }));
        var rows = StageTestData.Negation(40, 1);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label").Fit(StageTestData.Load(ml, rows));
        rows.AddRange([new TextRow { Label = "unseen", Text = "a label the key map never saw" },
            new TextRow { Label = "unseen", Text = "another one" }]);
        var stage = ml.Peft().TextClassification(Options()).Fit(toKey.Transform(StageTestData.Load(ml, rows)));
        Assert.IsTrue(messages.Any(m => m.Contains("Skipped 2 training row(s) with a missing label")),
            string.Join("\n", messages.Take(20)));
        Assert.AreEqual(2, stage.TrainingReport!.SkippedRows);
        Assert.IsTrue(messages.Any(m => m.Contains("trainable params:")), "peft-style parameter summary missing");
    }

    [TestMethod]
    public void OptionsAreValidatedBeforeAnyWorkAndNeverWritten()
    {
        var ml = new MLContext(1);
        var bad = Options();
        bad.Epochs = 0;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().TextClassification(bad));
        StringAssert.Contains(e.Message, "Epochs");
        var badLora = Options();
        badLora.Method = new LoraConfig { Dropout = 1.5 };
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft()
            .TextClassification(badLora)).Message, "Dropout");
        var noValidation = Options();
        noValidation.EarlyStoppingPatience = 2;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft()
            .TextClassification(noValidation)).Message, "ValidationSet");

        var options = Options();
        var lora = new LoraConfig { Rank = 4 };
        options.Method = lora;
        var estimator = ml.Peft().TextClassification(options);
        lora.Rank = 64; // changing the user's object after creating the estimator must not change the estimator
        var data = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(40, 1)))
            .Transform(StageTestData.Load(ml, StageTestData.Negation(40, 1)));
        var stage = estimator.Fit(data);
        Assert.AreEqual(4, ((LoraConfig)stage.Method).Rank);
        Assert.AreSame(lora, options.Method);
        Assert.IsNull(options.LearningRate, "Fit must not write the resolved learning rate into the user's options");
    }

    [TestMethod]
    public void CancelledTrainingThrowsAndWritesNothing()
    {
        var ml = new MLContext(1);
        using var cts = new CancellationTokenSource();
        var options = Options();
        options.Epochs = 50;
        options.LogEverySteps = 1;
        options.CancellationToken = cts.Token;
        options.Progress = p => { if (p.Step >= 2) cts.Cancel(); };
        var data = StageTestData.Load(ml, StageTestData.Negation(64, 1));
        string dir = Path.Combine(Path.GetTempPath(), "peft-cancel-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.Peft().TextClassification(options));
            Assert.ThrowsExactly<OperationCanceledException>(() =>
            {
                var model = pipeline.Fit(data);
                PeftModelIO.SaveAtomic(ml, model, data.Schema, Path.Combine(dir, "model.zip"));
            });
            Assert.IsEmpty(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, true); }
    }
}
