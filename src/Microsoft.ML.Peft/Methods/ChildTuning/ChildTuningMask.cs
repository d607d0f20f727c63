using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ChildTuning;

/// <summary>
/// The child network of one training run: per masked parameter, a boolean tensor marking the entries outside the child
/// network, and their starting values, used to put back what the optimizer's decoupled weight decay shrank.
/// Plain tensors, not parameters or buffers: they only matter while training and are not saved.
/// </summary>
internal sealed class ChildTuningMask : IDisposable
{
    // Frozen: true outside the child network. FrozenValues: those entries' starting values, in order (1-D).
    private readonly List<(string Name, Parameter Parameter, Tensor Frozen, Tensor FrozenValues)> _entries = [];

    /// <summary>
    /// The child-network masks (true where the weight may change) by parameter name; new tensors the caller disposes.
    /// </summary>
    public Dictionary<string, Tensor> Masks() => _entries.ToDictionary(e => e.Name, e => e.Frozen.logical_not());

    /// <summary>Number of entries the masks let train.</summary>
    public long Kept { get; private set; }

    /// <summary>Number of entries under the masks.</summary>
    public long Total { get; private set; }

    /// <summary>
    /// Estimates each weight's Fisher information as the sum over <paramref name="batches"/> training batches of its
    /// squared gradient, then keeps the <paramref name="reserveRatio"/> share of all entries with the highest scores
    /// (one threshold across every tensor, as the paper's reference code; exactly round(ratio · total) entries, ties
    /// broken arbitrarily).
    /// </summary>
    public static ChildTuningMask Estimate(PeftModel model, ITrainingProbe probe,
        IReadOnlyList<(string Name, Parameter Parameter)> masked, int batches, double reserveRatio)
    {
        var result = new ChildTuningMask();
        try
        {
            using var scope = NewDisposeScope();
            var fisher = masked.Select(p => zeros_like(p.Parameter, dtype: ScalarType.Float32)).ToList();
            // One batch per probe call: the Fisher estimate sums squared per-batch gradients, not the square of their
            // sum.
            for (int b = 0; b < batches; b++)
            {
                model.zero_grad();
                if (probe.AccumulateGradients(1) == 0) break;
                using var batchScope = NewDisposeScope();
                using var _ = no_grad();
                for (int i = 0; i < masked.Count; i++)
                    if (masked[i].Parameter.grad is { } g) fisher[i].add_(g.to(ScalarType.Float32).square());
            }
            model.zero_grad();

            using (no_grad())
            {
                long total = fisher.Sum(f => f.numel());
                long keep = Math.Min(total, (long)Math.Round(reserveRatio * total, MidpointRounding.AwayFromZero));
                var device = masked.Count > 0 ? masked[0].Parameter.device : CPU;
                var chosen = zeros(total, dtype: ScalarType.Bool, device: device);
                if (keep > 0)
                {
                    var flat = cat(fisher.Select(f => f.flatten().to(device)).ToList(), 0);
                    foreach (var f in fisher) f.Dispose();
                    var (_, indices) = flat.topk((int)Math.Min(keep, int.MaxValue), sorted: false);
                    chosen.index_fill_(0, indices, true);
                }
                long offset = 0;
                foreach (var (name, p) in masked)
                {
                    long n = p.numel();
                    var frozen = chosen.narrow(0, offset, n).view(p.shape).to(p.device).logical_not()
                        .DetachFromDisposeScope();
                    var values = p.detach().masked_select(frozen).DetachFromDisposeScope();
                    result._entries.Add((name, p, frozen, values));
                    offset += n;
                }
                result.Total = total;
                result.Kept = keep;
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Zeroes the gradient outside the child network.</summary>
    public void MaskGradients()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (_, p, frozen, _) in _entries)
            if (p.grad is { } g) g.masked_fill_(frozen, 0);
    }

    /// <summary>
    /// Puts back the starting value of every entry outside the child network. Their gradients are zero, so Adam never
    /// moves them, but AdamW's decoupled weight decay still shrinks every weight it is given.
    /// </summary>
    public void RestoreFrozen()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (_, p, frozen, values) in _entries) p.masked_scatter_(frozen, values);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (_, _, frozen, values) in _entries) { frozen.Dispose(); values.Dispose(); }
        _entries.Clear();
    }
}
