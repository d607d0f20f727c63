using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter; the same update as PyTorch's <c>torch.optim.AdamW</c> without amsgrad) and global
/// gradient-norm clipping. TorchSharp's own optimizer passes <c>double</c>s to in-place ops through implicit
/// <see cref="Scalar"/> conversions; such a temporary can be finalised by the GC while libtorch still reads it, which
/// showed up here as a rare "Unknown scalar type" from <c>mul_</c> mid-training. Every scalar below is created
/// explicitly and disposed after the op, so it stays alive for the whole native call.
/// </summary>
internal sealed class AdamWUpdate : IDisposable
{
    /// <summary>Parameters that share a peak learning rate and a weight decay.</summary>
    public sealed record Group(IReadOnlyList<Parameter> Parameters, double PeakRate, double WeightDecay);

    private readonly IReadOnlyList<Group> _groups;
    private readonly double _beta1, _beta2, _eps;
    private readonly Dictionary<Parameter, (Tensor Mean, Tensor Square)> _state =
        new(ReferenceEqualityComparer.Instance);
    private int _step;

    public AdamWUpdate(IReadOnlyList<Group> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        _groups = groups;
        (_beta1, _beta2, _eps) = (beta1, beta2, eps);
    }

    /// <summary>Every optimised parameter, in group order.</summary>
    public IEnumerable<Parameter> Parameters => _groups.SelectMany(g => g.Parameters);

    /// <summary>One update of every parameter that has a gradient, at <paramref name="factor"/> × each group's peak
    /// rate (the schedule's multiplier).</summary>
    public void Step(double factor)
    {
        _step++;
        double correction1 = 1 - Math.Pow(_beta1, _step), correction2 = 1 - Math.Pow(_beta2, _step);
        using var _ = no_grad();
        using var beta1 = _beta1.ToScalar();
        using var beta2 = _beta2.ToScalar();
        using var oneMinusBeta1 = (1 - _beta1).ToScalar();
        using var oneMinusBeta2 = (1 - _beta2).ToScalar();
        using var eps = _eps.ToScalar();
        using var rootCorrection2 = Math.Sqrt(correction2).ToScalar();
        foreach (var group in _groups)
        {
            double rate = group.PeakRate * factor;
            using var decay = (1 - rate * group.WeightDecay).ToScalar();
            using var stepSize = (-rate / correction1).ToScalar();
            foreach (var p in group.Parameters)
            {
                if (p.grad is not { } grad) continue;
                if (!_state.TryGetValue(p, out var s))
                {
                    // The trainer steps inside its per-batch dispose scope: the moments must outlive it.
                    s = (zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope());
                    _state[p] = s;
                }
                using var scope = NewDisposeScope();
                if (group.WeightDecay != 0) p.mul_(decay);
                s.Mean.mul_(beta1).add_(grad, alpha: oneMinusBeta1);
                s.Square.mul_(beta2).addcmul_(grad, grad, value: oneMinusBeta2);
                var denominator = s.Square.sqrt().div_(rootCorrection2).add_(eps);
                p.addcdiv_(s.Mean, denominator, value: stepSize);
            }
        }
    }

    /// <summary>Clears every parameter's gradient (kept allocated, as PyTorch's <c>set_to_none=False</c>).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.grad?.zero_();
    }

    /// <summary>Scales all gradients together so their global L2 norm is at most <paramref name="maxNorm"/>
    /// (<c>torch.nn.utils.clip_grad_norm_</c>); returns the norm before clipping.</summary>
    public static double ClipGradientNorm(IEnumerable<Parameter> parameters, double maxNorm)
    {
        var grads = parameters.Select(p => p.grad).OfType<Tensor>().ToList();
        if (grads.Count == 0) return 0;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var norms = stack(grads.Select(g => g.to(ScalarType.Float32).norm()).ToArray());
        double total = norms.norm().item<float>();
        double coefficient = maxNorm / (total + 1e-6);
        if (coefficient < 1)
        {
            using var c = coefficient.ToScalar();
            foreach (var g in grads) g.mul_(c);
        }
        return total;
    }

    public void Dispose()
    {
        foreach (var (mean, square) in _state.Values) { mean.Dispose(); square.Dispose(); }
        _state.Clear();
    }
}
