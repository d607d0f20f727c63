namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Greedy forward ensemble selection with replacement (Caruana et al., "Ensemble Selection from Libraries of Models",
/// ICML 2004; the weighted ensemble of AutoGluon and auto-sklearn): start empty, and each round add the candidate
/// (again, possibly) whose addition gives the best validation metric of the averaged scores; ties go to the lower
/// log-loss (or squared error). The result is the best ensemble seen over the rounds, its weights the times each
/// candidate was added.
/// </summary>
internal static class EnsembleSelection
{
    /// <summary>Counts per candidate (summing to the chosen ensemble's size) and the ensemble's metric.</summary>
    public static (int[] Counts, double Metric) Select(PeftMetric metric, IReadOnlyList<ValidationScores> candidates,
        int rounds)
    {
        if (candidates.Count == 0) throw new ArgumentException("No candidates to select from.", nameof(candidates));
        ArgumentOutOfRangeException.ThrowIfLessThan(rounds, 1);
        var reference = candidates[0];
        int rows = reference.Labels.Length, width = reference.Scores.Length > 0 ? reference.Scores[0].Length : 1;
        if (candidates.Any(c => c.Labels.Length != rows || !c.Labels.SequenceEqual(reference.Labels)))
            throw new ArgumentException("Candidates were scored on different validation rows.", nameof(candidates));

        var sum = new double[rows][];
        for (int i = 0; i < rows; i++) sum[i] = new double[width];
        var counts = new int[candidates.Count];
        var bestCounts = counts;
        (double Loss, double Tie) best = (double.PositiveInfinity, double.PositiveInfinity);
        double bestMetric = double.NaN;
        var average = new float[rows][];
        for (int i = 0; i < rows; i++) average[i] = new float[width];

        for (int round = 1; round <= rounds; round++)
        {
            int pick = -1;
            (double Loss, double Tie) pickScore = (double.PositiveInfinity, double.PositiveInfinity);
            double pickMetric = double.NaN;
            for (int c = 0; c < candidates.Count; c++)
            {
                for (int i = 0; i < rows; i++)
                    for (int k = 0; k < width; k++)
                        average[i][k] = (float)((sum[i][k] + candidates[c].Scores[i][k]) / round);
                double value = reference.Compute(metric, average);
                var score = (metric.ToLoss(value), reference.TieBreakLoss(average));
                if (double.IsNaN(score.Item1)) continue;
                if (pick < 0 || score.CompareTo(pickScore) < 0) (pick, pickScore, pickMetric) = (c, score, value);
            }
            if (pick < 0) break;
            counts[pick]++;
            for (int i = 0; i < rows; i++)
                for (int k = 0; k < width; k++) sum[i][k] += candidates[pick].Scores[i][k];
            if (pickScore.CompareTo(best) < 0)
                (best, bestMetric, bestCounts) = (pickScore, pickMetric, (int[])counts.Clone());
        }
        return (bestCounts, bestMetric);
    }
}
