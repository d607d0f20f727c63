using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// Importance tracking and budget masking (<c>peft</c>'s <c>RankAllocator</c>): per-entry sensitivity
/// |θ · ∂L/∂θ| smoothed by an EMA (beta1), its uncertainty |sensitivity − EMA| smoothed by a second EMA
/// (beta2), score = EMA · uncertainty; a singular value's importance adds its own score to the mean scores of its row
/// of Q and its column of P. Lives only during training: its state is not saved (the pruned singular values are saved
/// as zeros).
/// </summary>
internal sealed class AdaLoraRankAllocator : IDisposable
{
    private sealed class Ema : IDisposable
    {
        public Tensor? Importance;
        public Tensor? Uncertainty;
        public void Dispose() { Importance?.Dispose(); Uncertainty?.Dispose(); Importance = Uncertainty = null; }
    }

    private readonly AdaLoraConfig _config;
    private readonly List<SvdLinear> _layers;
    private readonly Dictionary<Parameter, Ema> _ema = new(ReferenceEqualityComparer.Instance);
    private Dictionary<SvdLinear, Tensor>? _rankPattern; // final keep-masks [r, 1], fixed after the final allocation

    public AdaLoraRankAllocator(AdaLoraConfig config, PeftModel model)
    {
        _config = config;
        _layers = Layers(model).ToList();
    }

    public static IEnumerable<SvdLinear> Layers(PeftModel model) =>
        ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<SvdLinear>();

    public int InitialBudget => _layers.Sum(l => l.Rank);
    public int TargetBudget => _config.TargetRank * _layers.Count;

    /// <summary>Called after each optimizer step while the gradients of that step are still in place.</summary>
    public void StepEnd(int step, int totalSteps)
    {
        var (tinit, tfinal) = AdaLoraBudget.Phases(totalSteps, _config.InitialWarmupFraction, _config.FinalFraction);
        int finalStep = totalSteps - tfinal;
        if (step < finalStep)
        {
            UpdateImportance();
            var (budget, mask) =
                AdaLoraBudget.At(step, totalSteps, InitialBudget, TargetBudget, tinit, tfinal, _config.DeltaT);
            if (mask) DisposeAll(MaskToBudget(budget));
        }
        else if (_rankPattern is null)
        {
            // The final allocation: mask to the target budget once, then keep that pattern for the rest of training.
            _rankPattern = MaskToBudget(TargetBudget);
            DisposeEma();
        }
        else ApplyRankPattern();
    }

    /// <summary>Zeroes the singular values the final allocation pruned (no-op before it).</summary>
    public void ApplyRankPattern()
    {
        if (_rankPattern is null) return;
        using var _ = no_grad();
        foreach (var layer in _layers) layer.lora_E.mul_(_rankPattern[layer]);
    }

    private void UpdateImportance()
    {
        using var _ = no_grad();
        double b1 = _config.Beta1, b2 = _config.Beta2;
        foreach (var layer in _layers)
            foreach (var p in new[] { layer.lora_A, layer.lora_E, layer.lora_B })
            {
                using var grad = p.grad;
                if (grad is null) continue;
                using var scope = NewDisposeScope();
                var sensitivity = (p * grad).abs_();
                if (!_ema.TryGetValue(p, out var ema)) _ema[p] = ema = new Ema();
                var importance = ema.Importance is null
                    ? sensitivity * (1 - b1)
                    : ema.Importance * b1 + sensitivity * (1 - b1);
                var deviation = (sensitivity - importance).abs_();
                var uncertainty = ema.Uncertainty is null
                    ? deviation * (1 - b2)
                    : ema.Uncertainty * b2 + deviation * (1 - b2);
                ema.Dispose();
                ema.Importance = importance.MoveToOuterDisposeScope();
                ema.Uncertainty = uncertainty.MoveToOuterDisposeScope();
            }
    }

    private Tensor Score(Parameter p)
    {
        if (_ema.TryGetValue(p, out var ema) && ema.Importance is not null) return ema.Importance * ema.Uncertainty!;
        return zeros_like(p);
    }

    /// <summary>
    /// Keeps the <paramref name="budget"/> most important singular values over all layers, zeroing the rest; returns
    /// the keep-masks.
    /// </summary>
    private Dictionary<SvdLinear, Tensor> MaskToBudget(int budget)
    {
        using var _ = no_grad();
        var scores = new List<Tensor>();
        using (var scope = NewDisposeScope())
        {
            foreach (var layer in _layers)
            {
                // Triplet importance: Λ_i's score + mean score of Q's row i + mean score of P's column i.
                var s = Score(layer.lora_E).view(-1) + Score(layer.lora_A).mean([1]) + Score(layer.lora_B).mean([0]);
                scores.Add(s.MoveToOuterDisposeScope());
            }
        }
        using var all = cat(scores, 0);
        // Exactly `budget` survive (peft masks everything at or below the k-th value, which can drop more on ties).
        using var order = all.argsort(descending: true);
        using var keepFlat = zeros_like(all);
        if (budget > 0) keepFlat.index_fill_(0, order[..budget], 1.0);
        var result = new Dictionary<SvdLinear, Tensor>(ReferenceEqualityComparer.Instance);
        long offset = 0;
        for (int i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            var keep = keepFlat.narrow(0, offset, layer.Rank).reshape(layer.Rank, 1).to(layer.lora_E.dtype);
            layer.lora_E.mul_(keep);
            result[layer] = keep;
            offset += layer.Rank;
            scores[i].Dispose();
        }
        return result;
    }

    private static void DisposeAll(Dictionary<SvdLinear, Tensor> masks)
    {
        foreach (var t in masks.Values) t.Dispose();
    }

    private void DisposeEma()
    {
        foreach (var e in _ema.Values) e.Dispose();
        _ema.Clear();
    }

    public void Dispose()
    {
        DisposeEma();
        if (_rankPattern is not null) DisposeAll(_rankPattern);
        _rankPattern = null;
    }
}
