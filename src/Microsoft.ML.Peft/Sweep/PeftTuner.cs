namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Proposes the next trial from the results so far. Tuners are deterministic given their seed and the results reported
/// to them, which is what lets a sweep resume from its checkpoint by replaying recorded results.
/// </summary>
public abstract class PeftTuner
{
    private protected PeftTuner() { }

    /// <summary>
    /// Random search: the method uniformly, then each of its parameters uniformly in the normalised space.
    /// </summary>
    /// <param name="seed">Seed of the random stream.</param>
    public static PeftTuner Random(int seed = 0) => new RandomTuner(seed);

    /// <summary>
    /// Grid search: the cartesian product, per method, of every choice and of each range's grid points; the sweep ends
    /// when the grid does.
    /// </summary>
    public static PeftTuner Grid() => new GridTuner();

    /// <summary>
    /// Cost-frugal local search in the manner of FLAML's CFO / FLOW2: starts from the space's defaults (a cheap, good
    /// point: LoRA r = 8, its default learning rate, one epoch), moves along random directions in the normalised space
    /// with an adaptive step, halves the step after repeated failures and restarts elsewhere when it gets too small;
    /// ties on the metric go to the cheaper (shorter) trial. The method changes with the probability of one more
    /// dimension.
    /// </summary>
    /// <param name="seed">Seed of the random directions.</param>
    public static PeftTuner CostFrugal(int seed = 0) => new CostFrugalTuner(seed);

    /// <summary>A short description (name and seed), logged and stored with checkpoints.</summary>
    public abstract override string ToString();

    /// <summary>Forgets all state and binds to a space; called at the start of every run.</summary>
    internal abstract void Reset(PeftSearchSpace space);

    /// <summary>The next point, or null when the tuner has nothing more to try.</summary>
    internal abstract TrialParameters? Propose();

    /// <summary>
    /// Reports how the last proposed point did: <paramref name="loss"/> is minimised (infinity for a failed trial).
    /// </summary>
    internal abstract void Report(TrialParameters parameters, double loss, TimeSpan cost);

    /// <summary>Builds a point from normalised coordinates.</summary>
    internal static TrialParameters FromUnit(PeftSearchSpace space, string method, IReadOnlyList<double> unit)
    {
        var ps = space.ParametersOf(method);
        var values = new Dictionary<string, object>();
        for (int i = 0; i < ps.Count; i++) values[ps[i].Name] = ps[i].FromUnit(unit[i]);
        return new TrialParameters(method, values);
    }

    /// <summary>The defaults of a method's parameters.</summary>
    internal static TrialParameters Defaults(PeftSearchSpace space, string method) =>
        new(method, space.ParametersOf(method).ToDictionary(p => p.Name, p => p.Default));
}
