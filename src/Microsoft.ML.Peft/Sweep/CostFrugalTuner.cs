namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// FLOW2-style randomized local search (Wu, Wang, Huang: "Frugal Optimization for Cost-related Hyperparameters", AAAI
/// 2021): from the incumbent x it tries x + s·u, then x − s·u along a random unit direction u in the normalised
/// space, moves on improvement, halves s after 2·d failed direction pairs, and restarts from a random point when s
/// falls below a floor. Cost (trial duration) breaks ties on the metric. Changing the method is one more "direction",
/// taken with probability 1/(d+1).
/// </summary>
internal sealed class CostFrugalTuner(int seed) : PeftTuner
{
    private const double StepFloor = 0.02;
    private PeftSearchSpace? _space;
    private Random _rng = new(seed);
    private readonly Dictionary<string, (double Loss, TimeSpan Cost)> _seen = [];
    private string? _method;          // incumbent method; null until the start point is reported
    private double[] _x = [];         // incumbent, normalised
    private double _loss = double.PositiveInfinity;
    private TimeSpan _cost;
    private double _step;
    private double[] _dir = [];
    private int _phase;               // 0: next is x + s·u (new direction), 1: next is x − s·u
    private bool _methodMove;         // the last proposal changed the method
    private int _failures;
    private TrialParameters? _restart; // a random point to restart from

    public override string ToString() => $"CostFrugal(seed: {seed})";

    internal override void Reset(PeftSearchSpace space)
    {
        _space = space;
        _rng = new Random(seed);
        _seen.Clear();
        _method = null;
        _x = [];
        _loss = double.PositiveInfinity;
        _cost = TimeSpan.Zero;
        _phase = 0;
        _failures = 0;
        _methodMove = false;
        _restart = null;
    }

    internal override TrialParameters? Propose()
    {
        var space = _space ?? throw new InvalidOperationException("Reset first.");
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            var candidate = Next(space);
            if (_seen.TryGetValue(candidate.ToJson(), out var known)) Update(candidate, known.Loss, known.Cost);
            else return candidate;
        }
        string m = space.Methods[_rng.Next(space.Methods.Count)];
        return new TrialParameters(m, space.ParametersOf(m).ToDictionary(p => p.Name, p => p.Sample(_rng)));
    }

    private TrialParameters Next(PeftSearchSpace space)
    {
        if (_restart is { } r) return r;
        if (_method is null) return Defaults(space, space.Methods[0]);
        int d = _x.Length;
        _methodMove = false;
        if (_phase == 0)
        {
            if (space.Methods.Count > 1 && _rng.NextDouble() < 1.0 / (d + 1))
            {
                _methodMove = true;
                var others = space.Methods.Where(m => m != _method).ToArray();
                string m = others[_rng.Next(others.Length)];
                var values = Defaults(space, m).Values.ToDictionary(kv => kv.Key, kv => kv.Value);
                var shared = FromUnit(space, _method, _x);
                foreach (var p in space.Shared) values[p.Name] = shared.Values[p.Name];
                return new TrialParameters(m, values);
            }
            _dir = RandomDirection(d);
        }
        double sign = _phase == 0 ? 1 : -1;
        return FromUnit(space, _method, _x.Select((v, i) => Math.Clamp(v + sign * _step * _dir[i], 0, 1)).ToArray());
    }

    internal override void Report(TrialParameters parameters, double loss, TimeSpan cost)
    {
        if (double.IsNaN(loss)) loss = double.PositiveInfinity;
        _seen[parameters.ToJson()] = (loss, cost);
        Update(parameters, loss, cost);
    }

    private void Update(TrialParameters p, double loss, TimeSpan cost)
    {
        var space = _space!;
        if (_method is null || _restart is not null)
        {
            _restart = null;
            MoveTo(space, p, loss, cost);
            _step = Math.Min(1.0, 0.25 * Math.Sqrt(Math.Max(1, _x.Length)));
            return;
        }
        bool better = loss < _loss - 1e-12 * Math.Max(1, Math.Abs(_loss))
            || (Math.Abs(loss - _loss) <= 1e-12 * Math.Max(1, Math.Abs(_loss)) && cost < _cost);
        if (better)
        {
            MoveTo(space, p, loss, cost);
            return;
        }
        if (_methodMove) { _methodMove = false; return; }
        if (_phase == 0) { _phase = 1; return; }
        _phase = 0;
        if (++_failures < Math.Max(4, 2 * _x.Length)) return;
        _failures = 0;
        _step *= 0.5;
        if (_step < StepFloor)
        {
            string m = space.Methods[_rng.Next(space.Methods.Count)];
            _restart = new TrialParameters(m, space.ParametersOf(m).ToDictionary(q => q.Name, q => q.Sample(_rng)));
        }
    }

    private void MoveTo(PeftSearchSpace space, TrialParameters p, double loss, TimeSpan cost)
    {
        _method = p.Method;
        _x = space.ParametersOf(p.Method).Select(q => q.ToUnit(p.Values[q.Name])).ToArray();
        _loss = loss;
        _cost = cost;
        _phase = 0;
        _failures = 0;
        _methodMove = false;
    }

    private double[] RandomDirection(int d)
    {
        if (d == 0) return [];
        var u = new double[d];
        double norm;
        do
        {
            for (int i = 0; i < d; i++)
            {
                // Box–Muller: a Gaussian per coordinate makes the direction uniform on the sphere.
                double a = 1.0 - _rng.NextDouble(), b = _rng.NextDouble();
                u[i] = Math.Sqrt(-2 * Math.Log(a)) * Math.Cos(2 * Math.PI * b);
            }
            norm = Math.Sqrt(u.Sum(v => v * v));
        } while (norm < 1e-9);
        return u.Select(v => v / norm).ToArray();
    }
}
