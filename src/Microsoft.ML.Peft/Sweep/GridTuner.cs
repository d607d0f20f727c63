namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// Exhaustive grid: methods in order, then an odometer over each parameter's grid values (last parameter fastest).
/// </summary>
internal sealed class GridTuner : PeftTuner
{
    private PeftSearchSpace? _space;
    private int _method;
    private int[]? _odometer;

    public override string ToString() => "Grid()";

    internal override void Reset(PeftSearchSpace space)
    {
        _space = space;
        _method = 0;
        _odometer = null;
    }

    internal override TrialParameters? Propose()
    {
        var space = _space ?? throw new InvalidOperationException("Reset first.");
        while (_method < space.Methods.Count)
        {
            var ps = space.ParametersOf(space.Methods[_method]);
            var grids = ps.Select(p => p.GridValues()).ToArray();
            if (_odometer is null) _odometer = new int[ps.Count];
            else if (!Advance(_odometer, grids))
            {
                _method++;
                _odometer = null;
                continue;
            }
            var values = new Dictionary<string, object>();
            for (int i = 0; i < ps.Count; i++) values[ps[i].Name] = grids[i][_odometer[i]];
            return new TrialParameters(space.Methods[_method], values);
        }
        return null;
    }

    private static bool Advance(int[] odometer, IReadOnlyList<object>[] grids)
    {
        for (int i = odometer.Length - 1; i >= 0; i--)
        {
            if (++odometer[i] < grids[i].Count) return true;
            odometer[i] = 0;
        }
        return false;
    }

    internal override void Report(TrialParameters parameters, double loss, TimeSpan cost) { }
}
