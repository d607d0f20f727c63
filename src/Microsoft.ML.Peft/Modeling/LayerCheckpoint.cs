using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>
/// Gradient checkpointing of one <see cref="BertLayer"/>, as PyTorch's
/// <c>torch.utils.checkpoint(use_reentrant=True)</c>: the forward pass runs the layer without autograd and keeps only
/// its inputs; the backward pass runs the layer again with autograd on a detached copy of those inputs (replaying the
/// random state, so dropout draws the same masks) and back-propagates the incoming gradient through that recomputation.
/// Parameter gradients accumulate into the parameters' <c>.grad</c> as usual; the input's gradient is handed on to the
/// layer below.
/// </summary>
/// <remarks>
/// TorchSharp keeps a single static instance of this class for every call, so it holds no per-call state: the layer,
/// the random state and the input flags go into the <see cref="AutogradContext"/>, the tensors into
/// <c>save_for_backward</c>.
/// </remarks>
internal sealed class LayerCheckpoint : SingleTensorFunction<LayerCheckpoint>
{
    private const string LayerKey = "layer", EncoderKey = "encoder", RngKey = "rng", NeedsGradKey = "needsGrad";

    /// <summary>
    /// Gradients returned to libtorch from <see cref="backward"/>, released on this thread's next checkpoint call.
    /// </summary>
    /// <remarks>
    /// libtorch copies a returned gradient as soon as the backward callback returns, so afterwards the managed handle
    /// only keeps the memory alive. It cannot be disposed before returning and no dispose scope of the caller can be
    /// relied on (on CUDA the autograd engine calls back on its own device thread), so it waits here instead.
    /// </remarks>
    [ThreadStatic]
    private static List<Tensor>? t_handedOver;

    /// <inheritdoc/>
    public override string Name => nameof(LayerCheckpoint);

    /// <summary>
    /// Runs <paramref name="layer"/> on <paramref name="hidden"/> through a checkpoint. <paramref name="anchor"/> is an
    /// empty tensor that requires grad: it makes the checkpoint part of the graph even when no input requires grad
    /// (frozen embeddings, as with LoRA), so the layer's own trainable parameters still get gradients; it never gets
    /// one itself.
    /// </summary>
    public static Tensor Run(BertEncoder encoder, BertLayer layer, Tensor hidden, Tensor additiveMask, Tensor anchor) =>
        apply(hidden, additiveMask, anchor, layer, encoder);

    /// <summary>Disposes the handles of gradients already handed to libtorch on this thread.</summary>
    public static void ReleaseHandedOver()
    {
        var list = t_handedOver;
        if (list is null || list.Count == 0) return;
        foreach (var t in list) t.Dispose();
        list.Clear();
    }

    /// <inheritdoc/>
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        // apply() calls this with autograd disabled: nothing inside the layer is recorded.
        var hidden = (Tensor)vars[0];
        var mask = (Tensor)vars[1];
        var layer = (BertLayer)vars[3];
        ctx.save_for_backward([hidden, mask]);
        ctx.save_data(NeedsGradKey, new[] { hidden.requires_grad, mask.requires_grad });
        ctx.save_data(LayerKey, layer);
        ctx.save_data(EncoderKey, vars[4]);
        ctx.save_data(RngKey, RandomState.Capture(hidden.device));
        // An undefined incoming gradient stays undefined (backward returns none) rather than being expanded to zeros
        // from a cached tensor the caller's dispose scope has already released.
        ctx.set_materialize_grads(false);
        return layer.forward(hidden, mask);
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        ReleaseHandedOver();
        Tensor? hiddenGrad = null, maskGrad = null;
        try
        {
            if (!grad_output.IsInvalid) (hiddenGrad, maskGrad) = Recompute(ctx, grad_output);
        }
        catch (Exception e)
        {
            // An exception must not cross the native autograd engine (it would end the process): record it for the
            // trainer, which throws it once backward() returns, and hand back no gradient.
            ((BertEncoder)ctx.get_data(EncoderKey)).RecordBackwardFailure(e);
        }
        finally
        {
            grad_output.Dispose(); // the managed handle TorchSharp made for this call; libtorch keeps its own reference
        }
        var handedOver = t_handedOver ??= [];
        if (hiddenGrad is not null) handedOver.Add(hiddenGrad);
        if (maskGrad is not null) handedOver.Add(maskGrad);
        // One entry per argument of apply(): hidden, mask, anchor (never a gradient), layer and encoder (not tensors).
        return [hiddenGrad!, maskGrad!, null!, null!, null!];
    }

    private static (Tensor? Hidden, Tensor? Mask) Recompute(AutogradContext ctx, Tensor grad)
    {
        var layer = (BertLayer)ctx.get_data(LayerKey);
        var needsGrad = (bool[])ctx.get_data(NeedsGradKey);
        var rng = (RandomState)ctx.get_data(RngKey);
        using var scope = NewDisposeScope();
        var saved = ctx.get_saved_variables();
        var hidden = saved[0].detach();
        hidden.requires_grad = needsGrad[0];
        var mask = saved[1].detach();
        mask.requires_grad = needsGrad[1];
        Tensor output;
        // The engine runs backward with autograd off; the recomputation must record its graph.
        using (enable_grad())
        using (rng.Replay(hidden.device))
            output = layer.forward(hidden, mask);
        if (!output.requires_grad) return (null, null); // nothing in or below this layer trains
        output.backward([grad]);
        return (needsGrad[0] ? hidden.grad?.DetachFromDisposeScope() : null,
            needsGrad[1] ? mask.grad?.DetachFromDisposeScope() : null);
    }

    /// <summary>The random state a checkpointed forward pass started from, to replay in the recomputation.</summary>
    private sealed class RandomState
    {
        private readonly byte[] _cpu;
        private readonly long? _cudaSeed;

        private RandomState(byte[] cpu, long? cudaSeed)
        {
            _cpu = cpu;
            _cudaSeed = cudaSeed;
        }

        public static RandomState Capture(Device device)
        {
            long? cudaSeed = null;
            if (device.type == DeviceType.CUDA)
            {
                // TorchSharp 0.107 cannot read or restore the CUDA generator's state: reseed it from a value drawn from
                // the (seeded) CPU generator instead, and reseed it with the same value before the recomputation.
                cudaSeed = randint_long(long.MaxValue);
                cuda.manual_seed_all(cudaSeed.Value);
            }
            using var state = get_rng_state();
            return new RandomState(state.data<byte>().ToArray(), cudaSeed);
        }

        /// <summary>
        /// Sets the captured state; disposing the result puts back the CPU state that was current before.
        /// </summary>
        public IDisposable Replay(Device device)
        {
            var current = CpuState();
            SetCpuState(_cpu);
            if (_cudaSeed is { } seed && device.type == DeviceType.CUDA) cuda.manual_seed_all(seed);
            return new Restore(current);
        }

        private static byte[] CpuState()
        {
            using var state = get_rng_state();
            return state.data<byte>().ToArray();
        }

        private static void SetCpuState(byte[] bytes)
        {
            using var state = tensor(bytes);
            set_rng_state(state);
        }

        private sealed class Restore(byte[] state) : IDisposable
        {
            private byte[]? _state = state;

            public void Dispose()
            {
                if (_state is null) return;
                SetCpuState(_state);
                _state = null;
            }
        }
    }
}
