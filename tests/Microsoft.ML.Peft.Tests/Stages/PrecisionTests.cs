using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Stages;

[TestClass]
[DoNotParallelize] // changes the PEFT_BF16 environment variable
public sealed class PrecisionTests
{
    private static PeftTextTransformer Train(MLContext ml, IDataView data, PeftPrecision precision) =>
        ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 2, BatchSize = 16, LearningRate = 2e-3,
            MaxSequenceLength = 32,
            Precision = precision,
        }).Fit(data);

    private static float[][] Scores(MLContext ml, ITransformer model, IDataView data) =>
        model.Transform(data).GetColumn<float[]>("Score").ToArray();

    [TestMethod]
    public void AutoFallsBackToFloat32WithoutBf16Support()
    {
        string? saved = Environment.GetEnvironmentVariable(PrecisionPolicy.OverrideVariable);
        try
        {
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "0");
            Assert.AreEqual(ScalarType.Float32, PrecisionPolicy.Resolve(PeftPrecision.Auto, CPU));
            Assert.AreEqual(ScalarType.BFloat16, PrecisionPolicy.Resolve(PeftPrecision.BFloat16, CPU),
                "an explicit request is honoured");
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "1");
            Assert.AreEqual(ScalarType.BFloat16, PrecisionPolicy.Resolve(PeftPrecision.Auto, CPU));
            Assert.AreEqual(ScalarType.Float32, PrecisionPolicy.Resolve(PeftPrecision.Float32, CPU));
        }
        finally { Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, saved); }
    }

    [TestMethod]
    public void Bf16ModelScoresInFloat32WhereBf16IsMissingAndAgrees()
    {
        var ml = new MLContext(1);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(200, 1)));
        var train = toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(200, 1)));
        var test = toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(100, 2)));
        string? saved = Environment.GetEnvironmentVariable(PrecisionPolicy.OverrideVariable);
        string path = Path.Combine(Path.GetTempPath(), $"peft-bf16-{Guid.NewGuid():N}.zip");
        try
        {
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "1");
            var bf16 = Train(ml, train, PeftPrecision.Auto);
            Assert.AreEqual("BFloat16", bf16.ScoringPrecision);
            var bf16Scores = Scores(ml, bf16, test);
            ml.Model.Save(bf16, train.Schema, path);

            // The same zip on a machine without bf16: Auto resolves to float32 there.
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "0");
            var loaded = (PeftTextTransformer)new MLContext(2).Model.Load(path, out _);
            Assert.AreEqual("Float32", loaded.ScoringPrecision);
            var fp32Scores = Scores(ml, loaded, test);
            double maxDiff = bf16Scores.Zip(fp32Scores, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
            int agree = bf16Scores.Zip(fp32Scores,
                (a, b) => Array.IndexOf(a, a.Max()) == Array.IndexOf(b, b.Max()) ? 1 : 0).Sum();
            Console.WriteLine($"bf16 vs float32 scoring of one trained model: max |Δp| {maxDiff:F4}, " +
                $"same prediction on {agree}/100 rows");
            // bf16 has 8 mantissa bits (~0.4% relative); through 6 layers probabilities move by a few hundredths at
            // most.
            Assert.IsLessThan(0.05, maxDiff);
            Assert.IsGreaterThanOrEqualTo(97, agree);
        }
        finally
        {
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, saved);
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Float32ModelLoadsAndScoresInBf16()
    {
        var ml = new MLContext(1);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(120, 1)));
        var train = toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(120, 1)));
        var test = toKey.Transform(StageTestData.Load(ml, StageTestData.Negation(60, 2)));
        string? saved = Environment.GetEnvironmentVariable(PrecisionPolicy.OverrideVariable);
        string path = Path.Combine(Path.GetTempPath(), $"peft-fp32-{Guid.NewGuid():N}.zip");
        try
        {
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "0");
            var fp32 = Train(ml, train, PeftPrecision.Auto);
            Assert.AreEqual("Float32", fp32.ScoringPrecision);
            var fp32Scores = Scores(ml, fp32, test);
            ml.Model.Save(fp32, train.Schema, path);
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, "1");
            var loaded = (PeftTextTransformer)new MLContext(2).Model.Load(path, out _);
            Assert.AreEqual("BFloat16", loaded.ScoringPrecision);
            var bf16Scores = Scores(ml, loaded, test);
            double maxDiff = bf16Scores.Zip(fp32Scores, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
            Assert.IsLessThan(0.05, maxDiff);
        }
        finally
        {
            Environment.SetEnvironmentVariable(PrecisionPolicy.OverrideVariable, saved);
            File.Delete(path);
        }
    }
}
