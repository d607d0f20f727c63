using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// Mixed-precision bookkeeping: when the model computes in bf16, the optimizer updates float32 master copies of the
/// trainable weights; gradients are copied up after <c>backward</c> and weights copied down after each step.
/// In float32 mode it is a pass-through over the model's own parameters.
/// </summary>
internal sealed class MasterWeights : IDisposable
{
    private IReadOnlyList<Parameter> _model;
    private readonly bool _active;

    /// <summary>The parameters the optimizer sees: float32 masters, or the model's own parameters.</summary>
    public IReadOnlyList<Parameter> Optimized { get; }

    /// <summary>Takes master copies of <paramref name="modelParameters"/> (still float32). After the model is cast to
    /// bf16 (which replaces its parameter objects), call <see cref="Bind"/> with the new ones.</summary>
    public MasterWeights(IReadOnlyList<Parameter> modelParameters, bool active)
    {
        _model = modelParameters;
        _active = active;
        if (!active) { Optimized = modelParameters; return; }
        using var _ = no_grad();
        Optimized = modelParameters
            .Select(p => new Parameter(p.detach().to(ScalarType.Float32).clone(), requires_grad: true))
            .ToList();
    }

    /// <summary>Points at the model's current parameter objects (same order as at construction).</summary>
    public void Bind(IReadOnlyList<Parameter> modelParameters)
    {
        if (modelParameters.Count != Optimized.Count)
            throw new InvalidOperationException("The trainable parameters changed while training.");
        _model = modelParameters;
    }

    public void ZeroModelGrads()
    {
        if (!_active) return;
        foreach (var p in _model) p.grad?.zero_();
    }

    public void GradsToMasters()
    {
        if (!_active) return;
        using var _ = no_grad();
        for (int i = 0; i < _model.Count; i++)
        {
            var g = _model[i].grad;
            if (g is null) continue;
            var master = Optimized[i];
            if (master.grad is null) master.grad = g.to(ScalarType.Float32);
            else master.grad.copy_(g);
        }
    }

    public void MastersToModel()
    {
        if (!_active) return;
        using var _ = no_grad();
        for (int i = 0; i < _model.Count; i++) _model[i].copy_(Optimized[i]);
    }

    public void Dispose()
    {
        if (!_active) return;
        foreach (var p in Optimized) p.Dispose();
    }
}
