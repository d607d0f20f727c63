using System.Globalization;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// What the stage's memory budget (<see cref="MLNet.PeftTextOptions.MaxTrainingMemory"/>) decided before training:
/// how many rows one forward and backward pass may hold, and so how many passes each optimizer step accumulates.
/// The optimizer step itself (the batch size, the learning rate, the number of steps) does not change.
/// </summary>
/// <param name="BudgetBytes">Memory training may add to the process (peak resident memory above what it held when
/// <c>Fit</c> began).</param>
/// <param name="UsedBeforeTrainingBytes">What the fit had added before the first pass: the base model, the data and
/// the method's weights.</param>
/// <param name="BytesPerRow">Activation memory one row of <paramref name="LongestRow"/> tokens adds to a pass.</param>
/// <param name="FixedBytes">Memory a pass adds whatever its rows: gradients, and the optimizer's state.</param>
/// <param name="LongestRow">Tokens in the longest training row, which the plan is made for (shorter rows cost
/// less).</param>
/// <param name="BatchSize">Rows per optimizer step (the effective batch).</param>
/// <param name="RowsPerPass">Most rows of <paramref name="LongestRow"/> tokens in one forward and backward pass (the
/// physical batch).</param>
/// <param name="AccumulationSteps">Passes per optimizer step for a batch of the longest rows; 1 when the whole batch
/// fits.</param>
/// <param name="GradientCheckpointing">True when encoder layers are recomputed in the backward pass, because the
/// budget asked for it or the options did.</param>
/// <param name="Measured">True when the costs were measured on this model (one pass of one row and one of three,
/// reading the process's peak resident memory); false where that is not possible, and they were estimated from the
/// encoder's shape.</param>
public sealed record TrainingMemoryPlan(
    long BudgetBytes, long UsedBeforeTrainingBytes, long BytesPerRow, long FixedBytes, int LongestRow, int BatchSize,
    int RowsPerPass, int AccumulationSteps, bool GradientCheckpointing, bool Measured)
{
    /// <summary>Padded tokens one pass may hold: <see cref="RowsPerPass"/> rows of <see cref="LongestRow"/>
    /// tokens.</summary>
    public int TokensPerPass => (int)Math.Min(int.MaxValue, (long)RowsPerPass * LongestRow);

    /// <summary>True when the budget did not even fit one row per pass; training then goes on with one.</summary>
    public bool OverBudget { get; init; }

    /// <summary>True when the budget turned attention dropout off, so that training takes libtorch's fused attention
    /// kernel, which never holds the s × s attention scores (only where the options left
    /// <see cref="MLNet.PeftTextOptions.AttentionDropout"/> unset and the batch did not fit otherwise).</summary>
    public bool FusedAttention { get; init; }

    /// <summary>One log line.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string how = Measured ? "measured" : "estimated from the encoder's shape";
        string passes = AccumulationSteps == 1
            ? string.Format(c, "the whole batch of {0} fits in one pass", BatchSize)
            : string.Format(c, "batches of {0} train as up to {1} passes of {2} row(s), gradients accumulated",
                BatchSize, AccumulationSteps, RowsPerPass);
        return string.Format(c,
            "Memory budget {0} MiB: {1} MiB in use before training, {2} MiB per row of {3} tokens ({4}) + {5} MiB per "
            + "pass; {6}{7}{8}.",
            Mib(BudgetBytes), Mib(UsedBeforeTrainingBytes), Mib(BytesPerRow), LongestRow, how, Mib(FixedBytes), passes,
            (FusedAttention ? ", attention dropout off for the fused attention kernel" : "")
            + (GradientCheckpointing ? ", gradient checkpointing on" : ""),
            OverBudget ? " (the budget is below what one row needs: training goes on with one row per pass)" : "");
    }

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("F0", CultureInfo.InvariantCulture);
}

/// <summary>
/// The memory budget's rules, as pure functions of measured (or estimated) costs, so they can be tested alone.
/// </summary>
internal static class MemoryPlanner
{
    /// <summary>Share of the machine's available memory the default budget takes: 0.25.</summary>
    public const double DefaultShare = 0.25;

    /// <summary>Largest default budget: 3 GiB, so a 512-token fit stays within 4 GB of resident memory on an ordinary
    /// laptop.</summary>
    public const long DefaultCap = 3L << 30;

    /// <summary>Smallest default budget: 512 MiB (below that, the machine is too small to train well in any
    /// case).</summary>
    public const long DefaultFloor = 512L << 20;

    /// <summary>Share of the budget the plan fills: 0.85, for what the measurement cannot see (allocator slack, the
    /// validation pass, the best epoch's copy of the weights).</summary>
    public const double Headroom = 0.85;

    /// <summary>Below this many rows per pass, gradient checkpointing is tried, as passes that small run the
    /// encoder's matrix products slowly.</summary>
    public const int CheckpointingBelowRows = 4;

    /// <summary>
    /// The plan for batches of <paramref name="batchSize"/>: <paramref name="measure"/>(fused attention, checkpointing)
    /// as the model is; where the batch does not fit, again with attention dropout off for the fused attention kernel
    /// (when <paramref name="fusedAllowed"/>), which costs no compute; then, where passes would hold fewer than
    /// <see cref="CheckpointingBelowRows"/> rows and checkpointing is off, with checkpointing, which costs a forward
    /// pass. Each is kept only where it fits more rows.
    /// </summary>
    public static TrainingMemoryPlan Decide(Func<bool, bool, TrainingMemoryPlan> measure, int batchSize,
        bool fusedAllowed, bool checkpointing)
    {
        var plan = measure(false, checkpointing);
        if (plan.RowsPerPass < batchSize && fusedAllowed)
        {
            var fused = measure(true, checkpointing);
            if (fused.RowsPerPass > plan.RowsPerPass) plan = fused;
        }
        if (!checkpointing && plan.RowsPerPass < Math.Min(batchSize, CheckpointingBelowRows))
        {
            var recomputed = measure(plan.FusedAttention, true);
            if (recomputed.RowsPerPass > plan.RowsPerPass) plan = recomputed;
        }
        return plan;
    }

    /// <summary>The budget when the option is unset, from the memory the machine has available now.</summary>
    public static long DefaultBudget(long availableBytes) =>
        Math.Clamp((long)(availableBytes * DefaultShare), DefaultFloor, DefaultCap);

    /// <summary>Rows of the longest length one pass may hold: what is left of the budget after what is in use and the
    /// fixed costs, over the cost of a row; 0 when not even one fits.</summary>
    public static int RowsThatFit(long budget, long usedBefore, long fixedBytes, long bytesPerRow)
    {
        double left = budget * Headroom - usedBefore - fixedBytes;
        if (bytesPerRow <= 0) return left > 0 ? int.MaxValue : 0;
        return (int)Math.Clamp(Math.Floor(left / bytesPerRow), 0, int.MaxValue);
    }

    /// <summary>
    /// Padded tokens a scoring batch may hold within <paramref name="budget"/>: scoring keeps one layer's tensors at a
    /// time (float32: the attention scores and their softmax, a·s² each; the hidden states, queries, keys, values,
    /// context and output, s·h each; the feed-forward's two s·i), so rows of <paramref name="maxLength"/> tokens that
    /// fit, times that length. 0 (no limit) when <paramref name="batchSize"/> rows fit.
    /// </summary>
    public static int ScoringTokenBudget(Modeling.EncoderConfig config, int maxLength, int batchSize, long budget)
    {
        double s = maxLength;
        double perRow = 4 * (2 * config.NumAttentionHeads * s * s + 6 * s * config.HiddenSize
            + 2 * s * config.IntermediateSize);
        long rows = (long)Math.Floor(budget * Headroom / perRow);
        return rows >= batchSize ? 0 : (int)Math.Min(int.MaxValue, Math.Max(1, rows) * (long)maxLength);
    }

    /// <summary>
    /// Activation memory per row of <paramref name="length"/> tokens kept for the backward pass, as Korthikanti et al.
    /// (2022) count it for a transformer layer in 16-bit (34·s·h + 5·a·s² bytes), scaled to the element size. Without
    /// checkpointing every layer's activations are kept; with it, one layer's plus each layer's input. Used only where
    /// the cost cannot be measured.
    /// </summary>
    public static long EstimateBytesPerRow(Modeling.EncoderConfig config, int length, int elementBytes,
        bool checkpointing)
    {
        double s = length, h = config.HiddenSize, a = config.NumAttentionHeads;
        double layer = (34 * s * h + 5 * a * s * s) * elementBytes / 2.0;
        double input = s * h * elementBytes;
        return (long)(checkpointing ? layer + config.NumHiddenLayers * input : config.NumHiddenLayers * layer);
    }
}
