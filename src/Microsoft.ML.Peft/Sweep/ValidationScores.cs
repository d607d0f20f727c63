using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// A model's scores on the validation rows, with the labels: what a trial's metric is computed from, and what ensemble
/// selection averages. Classification: labels are 1-based class keys (0 = missing) and each score row holds the class
/// probabilities; regression: labels are floats (NaN = missing) and each score row holds one value. Rows with a missing
/// label are skipped, as ML.NET's evaluators skip them.
/// </summary>
internal sealed class ValidationScores
{
    public ValidationScores(float[] labels, float[][] scores, bool regression)
    {
        if (labels.Length != scores.Length)
            throw new ArgumentException($"{labels.Length} labels for {scores.Length} score rows.");
        Labels = labels;
        Scores = scores;
        Regression = regression;
    }

    public float[] Labels { get; }
    public float[][] Scores { get; }
    public bool Regression { get; }

    /// <summary>Reads the label and score columns of a scored view in one pass.</summary>
    public static ValidationScores Read(IDataView scored, string label, string score, bool regression)
    {
        var labelColumn = scored.Schema[label];
        var scoreColumn = scored.Schema[score];
        var labels = new List<float>();
        var scores = new List<float[]>();
        using var cursor = scored.GetRowCursor([labelColumn, scoreColumn]);
        if (regression)
        {
            var getLabel = cursor.GetGetter<float>(labelColumn);
            var getScore = cursor.GetGetter<float>(scoreColumn);
            float l = 0, s = 0;
            while (cursor.MoveNext())
            {
                getLabel(ref l); getScore(ref s);
                labels.Add(l); scores.Add([s]);
            }
        }
        else
        {
            var getLabel = cursor.GetGetter<uint>(labelColumn);
            var getScore = cursor.GetGetter<VBuffer<float>>(scoreColumn);
            uint l = 0;
            VBuffer<float> s = default;
            while (cursor.MoveNext())
            {
                getLabel(ref l); getScore(ref s);
                labels.Add(l); scores.Add(s.DenseValues().ToArray());
            }
        }
        return new ValidationScores([.. labels], [.. scores], regression);
    }

    /// <summary>
    /// The rows of <paramref name="parts"/> one after another (the out-of-fold scores of a cross-validated trial).
    /// </summary>
    public static ValidationScores Concat(IReadOnlyList<ValidationScores> parts) =>
        new([.. parts.SelectMany(p => p.Labels)], [.. parts.SelectMany(p => p.Scores)], parts[0].Regression);

    /// <summary>The rows whose <paramref name="mask"/> entry is true (one fold of the validation rows).</summary>
    public ValidationScores Where(bool[] mask)
    {
        if (mask.Length != Labels.Length)
            throw new ArgumentException($"A mask of {mask.Length} rows for {Labels.Length} scored rows.", nameof(mask));
        var rows = Enumerable.Range(0, mask.Length).Where(i => mask[i]).ToList();
        return new([.. rows.Select(i => Labels[i])], [.. rows.Select(i => Scores[i])], Regression);
    }

    /// <summary><paramref name="metric"/> of these scores.</summary>
    public double Compute(PeftMetric metric) => Compute(metric, Scores);

    /// <summary>
    /// <paramref name="metric"/> of <paramref name="scores"/> (rows aligned with <see cref="Labels"/>), computed as
    /// ML.NET's evaluators compute it (argmax with ties to the lower class, log-loss with probabilities clamped at
    /// 1e-15, ...).
    /// </summary>
    public double Compute(PeftMetric metric, float[][] scores)
    {
        if (metric.IsRegression() != Regression)
            throw new InvalidOperationException(
                $"Metric {metric} does not fit {(Regression ? "regression" : "classification")} scores.");
        return metric switch
        {
            PeftMetric.Accuracy => Mean(scores, (y, s) => ArgMax(s) == y - 1 ? 1 : 0),
            PeftMetric.MacroAccuracy => MacroAccuracy(scores),
            PeftMetric.LogLoss => LogLoss(scores),
            PeftMetric.F1 => F1(scores),
            PeftMetric.Auc => Auc(scores),
            PeftMetric.Rmse => Math.Sqrt(Mean(scores, (y, s) => (s[0] - y) * (double)(s[0] - y))),
            PeftMetric.Mae => Mean(scores, (y, s) => Math.Abs(s[0] - (double)y)),
            PeftMetric.RSquared => RSquared(scores),
            PeftMetric.Pearson => Pearson(scores),
            _ => throw new ArgumentOutOfRangeException(nameof(metric)),
        };
    }

    /// <summary>
    /// A smooth companion of the metric for breaking ties: log-loss for classification, mean squared error for
    /// regression.
    /// </summary>
    public double TieBreakLoss() => TieBreakLoss(Scores);

    /// <summary>The tie-break loss of <paramref name="scores"/> (rows aligned with <see cref="Labels"/>).</summary>
    public double TieBreakLoss(float[][] scores) =>
        Regression ? Mean(scores, (y, s) => (s[0] - y) * (double)(s[0] - y)) : LogLoss(scores);

    private bool Present(int i) => Regression ? !float.IsNaN(Labels[i]) : Labels[i] > 0;

    private double Mean(float[][] scores, Func<float, float[], double> f)
    {
        double sum = 0;
        int n = 0;
        for (int i = 0; i < Labels.Length; i++)
            if (Present(i)) { sum += f(Labels[i], scores[i]); n++; }
        return n == 0 ? double.NaN : sum / n;
    }

    private static int ArgMax(float[] s)
    {
        int best = 0;
        for (int c = 1; c < s.Length; c++) if (s[c] > s[best]) best = c;
        return best;
    }

    private double LogLoss(float[][] scores) => Mean(scores, (y, s) =>
    {
        int k = (int)y - 1;
        double p = k < s.Length ? s[k] : 0;
        return -Math.Log(Math.Max(p, 1e-15));
    });

    private double MacroAccuracy(float[][] scores)
    {
        var right = new Dictionary<int, (int Right, int Count)>();
        for (int i = 0; i < Labels.Length; i++)
        {
            if (!Present(i)) continue;
            int k = (int)Labels[i] - 1;
            var (r, c) = right.GetValueOrDefault(k);
            right[k] = (r + (ArgMax(scores[i]) == k ? 1 : 0), c + 1);
        }
        return right.Count == 0 ? double.NaN : right.Values.Average(v => (double)v.Right / v.Count);
    }

    // Class key 2 (the second label value) is the positive class.
    private double F1(float[][] scores)
    {
        double tp = 0, fp = 0, fn = 0;
        for (int i = 0; i < Labels.Length; i++)
        {
            if (!Present(i)) continue;
            if (scores[i].Length != 2)
                throw new InvalidOperationException(
                    $"Metric F1 needs two classes, the model scores {scores[i].Length}.");
            bool actual = Labels[i] == 2, predicted = ArgMax(scores[i]) == 1;
            if (actual && predicted) tp++;
            else if (predicted) fp++;
            else if (actual) fn++;
        }
        return tp == 0 ? 0 : 2 * tp / (2 * tp + fp + fn);
    }

    // The Mann-Whitney form: the chance that a random positive row outranks a random negative one, ties counting half.
    private double Auc(float[][] scores)
    {
        var rows = new List<(float Score, bool Positive)>();
        for (int i = 0; i < Labels.Length; i++)
        {
            if (!Present(i)) continue;
            if (scores[i].Length != 2)
                throw new InvalidOperationException(
                    $"Metric Auc needs two classes, the model scores {scores[i].Length}.");
            rows.Add((scores[i][1], Labels[i] == 2));
        }
        rows.Sort((a, b) => a.Score.CompareTo(b.Score));
        double positives = rows.Count(r => r.Positive), negatives = rows.Count - positives, rankSum = 0;
        if (positives == 0 || negatives == 0) return double.NaN;
        for (int i = 0; i < rows.Count;)
        {
            int j = i;
            while (j < rows.Count && rows[j].Score == rows[i].Score) j++;
            double rank = (i + 1 + j) / 2.0; // mean 1-based rank of the tied run
            for (int k = i; k < j; k++) if (rows[k].Positive) rankSum += rank;
            i = j;
        }
        return (rankSum - positives * (positives + 1) / 2) / (positives * negatives);
    }

    private double RSquared(float[][] scores)
    {
        double mean = Mean(scores, (y, _) => y);
        double residual = Mean(scores, (y, s) => (s[0] - y) * (double)(s[0] - y));
        double total = Mean(scores, (y, _) => (y - mean) * (y - mean));
        return 1 - residual / total;
    }

    private double Pearson(float[][] scores)
    {
        double my = Mean(scores, (y, _) => y), ms = Mean(scores, (_, s) => s[0]);
        double cov = Mean(scores, (y, s) => (y - my) * (s[0] - ms));
        double vy = Mean(scores, (y, _) => (y - my) * (y - my)), vs = Mean(scores, (_, s) => (s[0] - ms) * (s[0] - ms));
        return vy == 0 || vs == 0 ? double.NaN : cov / Math.Sqrt(vy * vs);
    }
}
