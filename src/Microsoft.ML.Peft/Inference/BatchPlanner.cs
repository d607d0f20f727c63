namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Groups rows into batches of similar length so padding stays small: shuffled windows of many batches are
/// sorted by length, cut into batches, and the batch order shuffled again (for training); or everything sorted once
/// (for scoring).
/// </summary>
internal static class BatchPlanner
{
    /// <summary>
    /// Number of batches per length-sorted window during training; larger means less padding but less randomness.
    /// </summary>
    public const int WindowBatches = 50;

    /// <summary>
    /// Training batches: random order, each of at most <paramref name="batchSize"/> rows and (if positive)
    /// <paramref name="tokenBudget"/> padded tokens.
    /// </summary>
    public static List<int[]> ForTraining(IReadOnlyList<int> lengths, int batchSize, int tokenBudget, Random rng)
    {
        var order = Enumerable.Range(0, lengths.Count).ToArray();
        rng.Shuffle(order);
        var batches = new List<int[]>();
        int window = Math.Max(batchSize, batchSize * WindowBatches);
        for (int start = 0; start < order.Length; start += window)
        {
            var slice = order.AsSpan(start, Math.Min(window, order.Length - start)).ToArray();
            Array.Sort(slice, (a, b) => lengths[a].CompareTo(lengths[b]));
            Cut(slice, lengths, batchSize, tokenBudget, batches);
        }
        var shuffled = batches.ToArray();
        rng.Shuffle(shuffled);
        return [.. shuffled];
    }

    /// <summary>Scoring batches: all rows sorted by length, so each batch pads little.</summary>
    public static List<int[]> ForScoring(IReadOnlyList<int> lengths, int batchSize, int tokenBudget)
    {
        var order = Enumerable.Range(0, lengths.Count).ToArray();
        Array.Sort(order, (a, b) => lengths[a] != lengths[b] ? lengths[a].CompareTo(lengths[b]) : a.CompareTo(b));
        var batches = new List<int[]>();
        Cut(order, lengths, batchSize, tokenBudget, batches);
        return batches;
    }

    /// <summary>
    /// One training batch cut into passes of at most <paramref name="rows"/> rows and (if positive)
    /// <paramref name="tokenBudget"/> padded tokens (<paramref name="lengths"/>[k] is the length of
    /// <paramref name="batch"/>[k]). A batch within both limits comes back whole and in its order, since reordering
    /// its rows would change the dropout masks they draw; otherwise the passes take the shortest rows first, so that a
    /// pass of short rows holds more of them. Every row is in exactly one pass.
    /// </summary>
    public static List<int[]> Split(int[] batch, IReadOnlyList<int> lengths, int rows, int tokenBudget)
    {
        int cap = rows > 0 ? rows : int.MaxValue;
        if (batch.Length <= cap && (tokenBudget <= 0 || (long)batch.Length * lengths.Max() <= tokenBudget))
            return [batch];
        var positions = Enumerable.Range(0, batch.Length).ToArray();
        Array.Sort(positions, (a, b) => lengths[a] != lengths[b] ? lengths[a].CompareTo(lengths[b]) : a.CompareTo(b));
        var passes = new List<int[]>();
        Cut(positions, lengths, cap, tokenBudget, passes);
        return passes.Select(pass => Array.ConvertAll(pass, k => batch[k])).ToList();
    }

    // Rows are sorted by length ascending, so the padded size of a batch is its last row's length times its row count.
    private static void Cut(int[] sorted, IReadOnlyList<int> lengths, int batchSize, int tokenBudget, List<int[]> into)
    {
        var current = new List<int>(Math.Min(batchSize, sorted.Length));
        foreach (int i in sorted)
        {
            bool overBudget = tokenBudget > 0 && current.Count > 0
                && (long)lengths[i] * (current.Count + 1) > tokenBudget;
            if (current.Count == batchSize || overBudget)
            {
                into.Add([.. current]);
                current.Clear();
            }
            current.Add(i);
        }
        if (current.Count > 0) into.Add([.. current]);
    }

    /// <summary>
    /// What every engine does with <see cref="ForScoring"/>'s batches: scores each one (<paramref name="scoreBatch"/>
    /// gets the batch's rows and returns their outputs flat, row after row) and puts each row's outputs back in the
    /// order given. A document cut into windows is scored window by window, the windows batched with all the other
    /// rows, and its row gets the windows' pooled output (<see cref="DocumentWindows.Score"/>).
    /// </summary>
    public static float[][] ScoreInBatches(IReadOnlyList<Tokenization.TokenizedText> rows, int batchSize,
        int tokenBudget, Func<Tokenization.TokenizedText[], float[]> scoreBatch) =>
        DocumentWindows.Score(rows, windows => ScoreWindows(windows, batchSize, tokenBudget, scoreBatch));

    private static float[][] ScoreWindows(IReadOnlyList<Tokenization.TokenizedText> rows, int batchSize,
        int tokenBudget, Func<Tokenization.TokenizedText[], float[]> scoreBatch)
    {
        var results = new float[rows.Count][];
        foreach (var batch in ForScoring(rows.Select(r => r.Length).ToArray(), batchSize, tokenBudget))
        {
            var flat = scoreBatch(batch.Select(i => rows[i]).ToArray());
            int k = flat.Length / Math.Max(1, batch.Length);
            for (int r = 0; r < batch.Length; r++) results[batch[r]] = flat.AsSpan(r * k, k).ToArray();
        }
        return results;
    }
}
