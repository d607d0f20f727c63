using System.Globalization;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// What a stage decided before training: batch size, epochs and optimizer steps, and the rows it held out for
/// validation. Options the user set are kept as given; the rest follow the data size (see the options' documentation).
/// </summary>
/// <param name="Rows">Rows read for training (with a label).</param>
/// <param name="TrainingRows">Rows the optimizer trains on in the first pass (<paramref name="Rows"/> less the
/// held-out ones).</param>
/// <param name="HeldOutRows">Rows held out for validation and early stopping; 0 when none were.</param>
/// <param name="BatchSize">Rows per optimizer step.</param>
/// <param name="StepsPerEpoch">Optimizer steps per pass over the training rows.</param>
/// <param name="Epochs">Planned passes over the training rows (early stopping may end sooner).</param>
/// <param name="BatchSizeChosen">True when the stage chose the batch size (the option was left unset).</param>
/// <param name="EpochsChosen">True when the stage chose the epochs (the option was left unset).</param>
/// <param name="EarlyStoppingPatience">Epochs without improvement before stopping; 0 never stops early.</param>
/// <param name="RefitOnAllRows">True when, after validation picked the epoch, a second pass trains on every
/// row.</param>
public sealed record TrainingPlan(
    int Rows, int TrainingRows, int HeldOutRows, int BatchSize, int StepsPerEpoch, int Epochs,
    bool BatchSizeChosen, bool EpochsChosen, int EarlyStoppingPatience, bool RefitOnAllRows)
{
    /// <summary>Planned optimizer steps of the first pass.</summary>
    public int TotalSteps => StepsPerEpoch * Epochs;

    /// <summary>
    /// One log line, e.g. "300 rows (45 held out for validation): 20 epochs × 16 steps of 16 = 320 steps".
    /// </summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string held = HeldOutRows > 0
            ? string.Format(c, " ({0} held out for validation, stratified; early stopping after {1} epoch(s) without "
                + "improvement{2})", HeldOutRows, EarlyStoppingPatience,
                RefitOnAllRows ? "; then a refit on all rows for the best epoch count" : "")
            : "";
        string chosen = (BatchSizeChosen, EpochsChosen) switch
        {
            (true, true) => "epochs and batch size chosen from the data size",
            (false, true) => "epochs chosen from the data size",
            (true, false) => "batch size chosen from the data size",
            _ => "as set in the options",
        };
        return string.Format(c, "{0} rows{1}: {2} epochs × {3} steps of {4} = {5} optimizer steps ({6}).",
            Rows, held, Epochs, StepsPerEpoch, BatchSize, TotalSteps, chosen);
    }
}

/// <summary>
/// Chooses batch size, epochs and the automatic validation split from the number of training rows. A learning-rate
/// schedule needs optimizer steps, not epochs: three epochs of 300 rows at batch 32 are 30 steps, most of them warm-up
/// and decay, and a fresh head barely moves. So an unset <c>Epochs</c> becomes enough epochs for
/// <see cref="MinimumSteps"/> steps (at least <see cref="DefaultEpochs"/>, at most <see cref="MaximumEpochs"/>, and no
/// more than <see cref="MaximumSteps"/> steps on large data), and small data trains in batches of
/// <see cref="SmallBatchSize"/> so that each epoch has more steps.
/// </summary>
internal static class TrainingPlanner
{
    /// <summary>Optimizer steps an unset <c>Epochs</c> aims for at least: 300.</summary>
    public const int MinimumSteps = 300;

    /// <summary>Epochs on large data, where one epoch already has many steps: 3 (Hugging Face's default).</summary>
    public const int DefaultEpochs = 3;

    /// <summary>Most epochs an unset <c>Epochs</c> becomes, however few the rows: 40.</summary>
    public const int MaximumEpochs = 40;

    /// <summary>On large data an unset <c>Epochs</c> stops adding epochs past this many steps (at least one epoch):
    /// 20,000.</summary>
    public const int MaximumSteps = 20_000;

    /// <summary>Batch size an unset <c>BatchSize</c> becomes below <see cref="SmallDataRows"/> rows: 16.</summary>
    public const int SmallBatchSize = 16;

    /// <summary>Batch size an unset <c>BatchSize</c> becomes from <see cref="SmallDataRows"/> rows on: 32.</summary>
    public const int LargeBatchSize = 32;

    /// <summary>Row count from which the larger batch is used: 1,000.</summary>
    public const int SmallDataRows = 1_000;

    /// <summary>
    /// With <c>Epochs</c> unset and no validation set, data up to this many rows gets a held-out validation share:
    /// 10,000.
    /// </summary>
    public const int AutoValidationMaxRows = 10_000;

    /// <summary>Share of the rows held out by the automatic validation: 0.15.</summary>
    public const double AutoValidationFraction = 0.15;

    /// <summary>Fewest rows that get an automatic validation split: 50 (below it, too few rows are left to hold
    /// out).</summary>
    public const int AutoValidationMinRows = 50;

    /// <summary>Share of the planned epochs without improvement that stops a run with held-out validation:
    /// 0.25.</summary>
    public const double PatienceShare = 0.25;

    /// <summary>The batch size for <paramref name="rows"/> training rows when the option is unset.</summary>
    public static int ChooseBatchSize(int rows) => rows < SmallDataRows ? SmallBatchSize : LargeBatchSize;

    /// <summary>The epochs for <paramref name="stepsPerEpoch"/> steps per epoch when the option is unset.</summary>
    public static int ChooseEpochs(int stepsPerEpoch)
    {
        int steps = Math.Max(1, stepsPerEpoch);
        int epochs = Math.Clamp((MinimumSteps + steps - 1) / steps, DefaultEpochs, MaximumEpochs);
        // Large data: fewer epochs while that keeps at least one, so a huge set does not train for days by default.
        int affordable = Math.Max(1, MaximumSteps / steps);
        return Math.Min(epochs, affordable);
    }

    /// <summary>
    /// The share of rows to hold out: <paramref name="requested"/> when given (0 turns it off); else, with the epochs
    /// unset, no validation set and <see cref="AutoValidationMinRows"/> to <see cref="AutoValidationMaxRows"/> rows,
    /// <see cref="AutoValidationFraction"/>.
    /// </summary>
    public static double ChooseValidationFraction(int rows, double? requested, bool epochsSet, bool hasValidationSet)
    {
        if (requested is { } r) return hasValidationSet ? 0 : r;
        if (epochsSet || hasValidationSet || rows > AutoValidationMaxRows || rows < AutoValidationMinRows) return 0;
        return AutoValidationFraction;
    }

    /// <summary>Patience for a run validated on held-out rows: a share of the planned epochs, at least 2.</summary>
    public static int ChoosePatience(int epochs) => Math.Max(2, (int)Math.Ceiling(epochs * PatienceShare));

    /// <summary>
    /// Which rows to hold out: <paramref name="fraction"/> of each class (classification; every class with at least two
    /// rows keeps one for training and gives at least one), or of all rows (regression), drawn with
    /// <paramref name="seed"/>.
    /// </summary>
    /// <returns>A mask over the rows: true where the row is held out.</returns>
    public static bool[] StratifiedHoldOut(IReadOnlyList<float> labels, double fraction, bool classification, int seed)
    {
        var mask = new bool[labels.Count];
        if (fraction <= 0 || labels.Count < 2) return mask;
        var rng = new Random(seed);
        IEnumerable<int[]> groups = classification
            ? Enumerable.Range(0, labels.Count).GroupBy(i => labels[i]).OrderBy(g => g.Key).Select(g => g.ToArray())
            : [Enumerable.Range(0, labels.Count).ToArray()];
        foreach (var group in groups)
        {
            if (group.Length < 2) continue;
            int take = Math.Clamp(
                (int)Math.Round(group.Length * fraction, MidpointRounding.AwayFromZero), 1, group.Length - 1);
            rng.Shuffle(group);
            for (int k = 0; k < take; k++) mask[group[k]] = true;
        }
        return mask;
    }
}
