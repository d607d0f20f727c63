namespace Microsoft.ML.Peft.Sweep;

/// <summary>Uniform random search.</summary>
internal sealed class RandomTuner(int seed) : PeftTuner
{
    private PeftSearchSpace? _space;
    private Random _rng = new(seed);

    public override string ToString() => $"Random(seed: {seed})";

    internal override void Reset(PeftSearchSpace space)
    {
        _space = space;
        _rng = new Random(seed);
    }

    internal override TrialParameters? Propose()
    {
        var space = _space ?? throw new InvalidOperationException("Reset first.");
        string method = space.Methods[_rng.Next(space.Methods.Count)];
        return new TrialParameters(method, space.ParametersOf(method).ToDictionary(p => p.Name, p => p.Sample(_rng)));
    }

    internal override void Report(TrialParameters parameters, double loss, TimeSpan cost) { }
}
