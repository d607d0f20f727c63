namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Lets a running trial report an intermediate result after each epoch so that successive halving
/// (<see cref="PeftSweep.SetEarlyStopping"/>) can stop it; <see cref="ReportEpoch(int, double, bool)"/> throws
/// <see cref="TrialPrunedException"/> when the trial should stop. Without early stopping it only records the values.
/// </summary>
public sealed class TrialReporter
{
    private readonly SuccessiveHalving? _halving;

    internal TrialReporter(int trialId, SuccessiveHalving? halving)
    {
        TrialId = trialId;
        _halving = halving;
    }

    /// <summary>The trial this reporter belongs to.</summary>
    public int TrialId { get; }

    /// <summary>The epoch the trial was stopped at; null while it runs or when it was not stopped.</summary>
    public int? PrunedAtEpoch { get; private set; }

    private readonly List<double> _losses = [];

    /// <summary>The losses reported so far, one per epoch in order (the last report for an epoch wins).</summary>
    public IReadOnlyList<double> EpochLosses => _losses;

    /// <summary>Reports the validation loss (lower is better) after <paramref name="epoch"/> (1-based).</summary>
    /// <exception cref="TrialPrunedException">The trial is not in the top 1/η of its rung: stop it.</exception>
    public void ReportEpoch(int epoch, double loss) => ReportEpoch(epoch, loss, isLastEpoch: false);

    /// <summary>
    /// As <see cref="ReportEpoch(int, double)"/>; after the trial's last epoch the loss still joins its rung (later
    /// trials are compared with it) but the trial is never stopped: it has nothing left to save, and its result counts.
    /// </summary>
    public void ReportEpoch(int epoch, double loss, bool isLastEpoch)
    {
        if (epoch >= 1)
        {
            while (_losses.Count < epoch) _losses.Add(double.NaN);
            _losses[epoch - 1] = loss;
        }
        if (_halving is null || PrunedAtEpoch is not null) return;
        if (_halving.ShouldStop(epoch, double.IsNaN(loss) ? double.PositiveInfinity : loss, out string reason)
            && !isLastEpoch)
        {
            PrunedAtEpoch = epoch;
            throw new TrialPrunedException(reason);
        }
    }
}

/// <summary>
/// Thrown by <see cref="TrialReporter.ReportEpoch(int, double, bool)"/> to stop a trial that successive halving pruned.
/// </summary>
public sealed class TrialPrunedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TrialPrunedException(string message) : base(message) { }
}

/// <summary>
/// Asynchronous successive halving (ASHA, Li et al. 2020) over epochs: rungs at epochs <c>m·η^k</c>; a trial reaching
/// a rung goes on only when its loss is among the best ⌈n/η⌉ of the n losses seen at that rung so far (always
/// while n &lt; η). A resumed sweep feeds the checkpointed trials' epoch losses back through <see cref="Replay"/>, so
/// its rungs are the same.
/// </summary>
/// <param name="reductionFactor">η.</param>
/// <param name="minEpochs">The first rung.</param>
/// <param name="sharedRung">With sweep storage: records a loss at a rung epoch and returns every loss the study has
/// at that epoch (its own included), so that the rungs are those of all workers; null keeps them in this process.
/// </param>
internal sealed class SuccessiveHalving(int reductionFactor, int minEpochs,
    Func<int, double, IReadOnlyList<double>>? sharedRung = null)
{
    private readonly Dictionary<int, List<double>> _rungs = [];

    /// <summary>Adds a finished trial's per-epoch losses to the rungs it reached, without deciding anything.</summary>
    public void Replay(IReadOnlyList<double> epochLosses)
    {
        for (int epoch = 1; epoch <= epochLosses.Count; epoch++)
        {
            if (!IsRung(epoch) || double.IsNaN(epochLosses[epoch - 1])) continue;
            if (!_rungs.TryGetValue(epoch, out var seen)) _rungs[epoch] = seen = [];
            seen.Add(epochLosses[epoch - 1]);
        }
    }

    public bool ShouldStop(int epoch, double loss, out string reason)
    {
        reason = "";
        if (!IsRung(epoch)) return false;
        List<double> seen;
        if (sharedRung is not null) seen = [.. sharedRung(epoch, loss)];
        else
        {
            if (!_rungs.TryGetValue(epoch, out seen!)) _rungs[epoch] = seen = [];
            seen.Add(loss);
        }
        if (seen.Count < reductionFactor) return false;
        int keep = (int)Math.Ceiling(seen.Count / (double)reductionFactor);
        double cutoff = seen.Order().ElementAt(keep - 1);
        if (loss <= cutoff) return false;
        reason = $"Stopped by successive halving at epoch {epoch}: validation loss {loss:G4} " +
            $"is not among the best {keep} of {seen.Count} at this rung (cut-off {cutoff:G4}).";
        return true;
    }

    private bool IsRung(int epoch)
    {
        for (long r = minEpochs; r <= epoch; r *= reductionFactor)
            if (r == epoch) return true;
        return false;
    }
}
