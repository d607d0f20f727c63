using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Sweep;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>The sweep's metrics on score arrays (checked against ML.NET's evaluators) and greedy ensemble
/// selection.</summary>
[TestClass]
public sealed class EnsembleSelectionTests
{
    public sealed class ClassRow
    {
        [KeyType(3)] public uint Label { get; set; }
        [VectorType(3)] public float[] Score { get; set; } = [];
        [KeyType(3)] public uint PredictedLabel { get; set; }
    }

    public sealed class BinaryRow
    {
        [KeyType(2)] public uint Label { get; set; }
        [VectorType(2)] public float[] Score { get; set; } = [];
        [KeyType(2)] public uint PredictedLabel { get; set; }
    }

    public sealed class AucRow
    {
        public bool Label { get; set; }
        public float Score { get; set; }
        public bool PredictedLabel { get; set; }
    }

    public sealed class RegressionRow
    {
        public float Label { get; set; }
        public float Score { get; set; }
    }

    private static float[] Probabilities(Random rng, int classes)
    {
        var p = Enumerable.Range(0, classes).Select(_ => (float)rng.NextDouble() + 1e-3f).ToArray();
        float sum = p.Sum();
        return p.Select(v => v / sum).ToArray();
    }

    // LoadFromEnumerable stores a [KeyType] property as a 0-based index (key = value + 1).
    private static uint ArgMaxIndex(float[] p) => (uint)Array.IndexOf(p, p.Max());

    [TestMethod]
    public void ClassificationMetricsEqualMLNetEvaluators()
    {
        var rng = new Random(3);
        var ml = new MLContext(1);
        // The third class is rare, so macro and micro accuracy differ.
        var rows = Enumerable.Range(0, 200).Select(i =>
        {
            var p = Probabilities(rng, 3);
            return new ClassRow { Label = i % 10 == 0 ? 2u : (uint)rng.Next(0, 2), Score = p,
                PredictedLabel = ArgMaxIndex(p) };
        }).ToList();
        var view = ml.Data.LoadFromEnumerable(rows);
        var scores = ValidationScores.Read(view, "Label", "Score", regression: false);
        CollectionAssert.AreEqual(rows.Select(r => (float)r.Label + 1).ToArray(), scores.Labels);
        var expected = ml.MulticlassClassification.Evaluate(view);
        Assert.AreEqual(expected.MicroAccuracy, scores.Compute(PeftMetric.Accuracy), 1e-9);
        Assert.AreEqual(expected.MacroAccuracy, scores.Compute(PeftMetric.MacroAccuracy), 1e-9);
        Assert.AreEqual(expected.LogLoss, scores.Compute(PeftMetric.LogLoss), 1e-6);
        Assert.AreNotEqual(scores.Compute(PeftMetric.Accuracy), scores.Compute(PeftMetric.MacroAccuracy), 1e-6);

        var binary = Enumerable.Range(0, 150).Select(_ =>
        {
            var p = Probabilities(rng, 2);
            return new BinaryRow { Label = (uint)rng.Next(0, 2), Score = p, PredictedLabel = ArgMaxIndex(p) };
        }).ToList();
        var binaryView = ml.Data.LoadFromEnumerable(binary);
        var cm = ml.MulticlassClassification.Evaluate(binaryView).ConfusionMatrix;
        double tp = cm.Counts[1][1], fp = cm.Counts[0][1], fn = cm.Counts[1][0];
        var binaryScores = ValidationScores.Read(binaryView, "Label", "Score", regression: false);
        Assert.AreEqual(2 * tp / (2 * tp + fp + fn), binaryScores.Compute(PeftMetric.F1), 1e-9);
        // AUC as ML.NET's binary evaluator computes it on the positive class's probability (some scores tied).
        var auc = ml.BinaryClassification.EvaluateNonCalibrated(ml.Data.LoadFromEnumerable(binary.Select((r, i) =>
            new AucRow { Label = r.Label == 1, Score = i % 5 == 0 ? 0.5f : r.Score[1],
                PredictedLabel = (i % 5 == 0 ? 0.5f : r.Score[1]) > 0.5f })));
        var tied = new ValidationScores(binaryScores.Labels,
            binary.Select((r, i) => i % 5 == 0 ? new[] { 0.5f, 0.5f } : r.Score).ToArray(), regression: false);
        Assert.AreEqual(auc.AreaUnderRocCurve, tied.Compute(PeftMetric.Auc), 1e-9);
        Assert.ThrowsExactly<InvalidOperationException>(() => scores.Compute(PeftMetric.Auc));
        Assert.ThrowsExactly<InvalidOperationException>(() => scores.Compute(PeftMetric.F1));
        Assert.ThrowsExactly<InvalidOperationException>(() => scores.Compute(PeftMetric.Rmse));
    }

    [TestMethod]
    public void RegressionMetricsEqualMLNetEvaluators()
    {
        var rng = new Random(5);
        var ml = new MLContext(1);
        var rows = Enumerable.Range(0, 120).Select(i =>
        {
            float y = (float)(rng.NextDouble() * 5);
            return new RegressionRow { Label = i % 13 == 0 ? float.NaN : y,
                Score = y + (float)(rng.NextDouble() - 0.3) };
        }).ToList();
        var view = ml.Data.LoadFromEnumerable(rows);
        var scores = ValidationScores.Read(view, "Label", "Score", regression: true);
        var expected = ml.Regression.Evaluate(view);
        Assert.AreEqual(expected.RootMeanSquaredError, scores.Compute(PeftMetric.Rmse), 1e-6);
        Assert.AreEqual(expected.MeanAbsoluteError, scores.Compute(PeftMetric.Mae), 1e-6);
        Assert.AreEqual(expected.RSquared, scores.Compute(PeftMetric.RSquared), 1e-6);
        // Pearson from its definition, on the rows with a label.
        var kept = rows.Where(r => !float.IsNaN(r.Label)).ToList();
        double my = kept.Average(r => r.Label), ms = kept.Average(r => r.Score);
        double cov = kept.Sum(r => (r.Label - my) * (r.Score - ms));
        double pearson = cov / Math.Sqrt(kept.Sum(r => (r.Label - my) * (r.Label - my))
            * kept.Sum(r => (r.Score - ms) * (r.Score - ms)));
        Assert.AreEqual(pearson, scores.Compute(PeftMetric.Pearson), 1e-9);
    }

    [TestMethod]
    public void SelectionAveragesModelsWhoseErrorsDiffer()
    {
        // Three classifiers, each confidently wrong on a different third of the rows and mildly right elsewhere: each
        // alone scores 2/3, any two averaged are right everywhere.
        const int n = 30;
        var labels = Enumerable.Range(0, n).Select(i => (float)(i % 2 + 1)).ToArray();
        ValidationScores Model(int wrongThird) => new(labels, Enumerable.Range(0, n).Select(i =>
        {
            bool wrong = i % 3 == wrongThird;
            float right = wrong ? 0.4f : 0.9f;
            return labels[i] == 1 ? new[] { right, 1 - right } : [1 - right, right];
        }).ToArray(), regression: false);
        var candidates = new[] { Model(0), Model(1), Model(2) };
        foreach (var c in candidates) Assert.AreEqual(2.0 / 3, c.Compute(PeftMetric.Accuracy), 1e-9);

        var (counts, metric) = EnsembleSelection.Select(PeftMetric.Accuracy, candidates, rounds: 6);
        Assert.AreEqual(1.0, metric, 1e-9);
        Assert.IsGreaterThanOrEqualTo(2, counts.Count(c => c > 0));

        // A candidate that is right everywhere and most confident is chosen alone.
        var perfect = new ValidationScores(labels,
            labels.Select(y => y == 1 ? new[] { 0.99f, 0.01f } : [0.01f, 0.99f]).ToArray(), regression: false);
        var (alone, aloneMetric) = EnsembleSelection.Select(PeftMetric.Accuracy, [.. candidates, perfect], rounds: 6);
        CollectionAssert.AreEqual(new[] { 0, 0, 0, 1 }, alone);
        Assert.AreEqual(1.0, aloneMetric, 1e-9);

        var other = new ValidationScores([.. labels.Reverse()], candidates[0].Scores, regression: false);
        Assert.ThrowsExactly<ArgumentException>(() =>
            EnsembleSelection.Select(PeftMetric.Accuracy, [candidates[0], other], rounds: 2));
    }

    [TestMethod]
    public void SelectionLowersRegressionError()
    {
        // Two regressors with opposite biases: their equal-weight average is exact.
        var labels = Enumerable.Range(0, 20).Select(i => (float)i).ToArray();
        var high = new ValidationScores(labels, labels.Select(y => new[] { y + 1 }).ToArray(), regression: true);
        var low = new ValidationScores(labels, labels.Select(y => new[] { y - 1 }).ToArray(), regression: true);
        var (counts, rmse) = EnsembleSelection.Select(PeftMetric.Rmse, [high, low], rounds: 4);
        CollectionAssert.AreEqual(new[] { 1, 1 }, counts);
        Assert.AreEqual(0, rmse, 1e-9);
    }
}
