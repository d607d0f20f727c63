using Microsoft.ML.Peft.Methods.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>
/// A reference to the shared prototype kept outside TorchSharp's registration, so each layer does not re-register it.
/// </summary>
internal sealed class Shared<T>(T value) where T : nn.Module
{
    public T Value { get; } = value;
}

/// <summary>
/// The shared bottleneck adapter (AdapterHub names <c>adapter_down</c>, <c>adapter_up</c>): <c>up(relu(down(h)))</c>
/// with each layer's masks applied to the two weight matrices (biases are not masked, as ProPETL). Up-projection and
/// biases start at zero, so the untrained adapter adds nothing.
/// </summary>
internal sealed class AdapterPrototype : nn.Module
{
    internal readonly Linear adapter_down;
    internal readonly Linear adapter_up;

    /// <summary>
    /// Creates a <paramref name="hidden"/> → <paramref name="bottleneck"/> → <paramref name="hidden"/> adapter.
    /// </summary>
    public AdapterPrototype(long hidden, long bottleneck) : base("propetl_prototype")
    {
        adapter_down = nn.Linear(hidden, bottleneck);
        adapter_up = nn.Linear(bottleneck, hidden);
        using (no_grad())
        {
            // AdapterHub's "mam_adapter" init: Kaiming-uniform down, zero up and biases.
            nn.init.kaiming_uniform_(adapter_down.weight!, Math.Sqrt(5));
            nn.init.zeros_(adapter_down.bias!);
            nn.init.zeros_(adapter_up.weight!);
            nn.init.zeros_(adapter_up.bias!);
        }
        RegisterComponents();
    }

    /// <summary>
    /// The adapter's output for <paramref name="h"/> with the given 0/1 (or straight-through) weight masks.
    /// </summary>
    public Tensor Forward(Tensor h, Tensor downMask, Tensor upMask)
    {
        using var scope = NewDisposeScope();
        var down = nn.functional.relu(nn.functional.linear(h, adapter_down.weight! * downMask, adapter_down.bias));
        return nn.functional.linear(down, adapter_up.weight! * upMask, adapter_up.bias).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// One shared LoRA pair (<c>lora_A</c> [r, in], <c>lora_B</c> [out, r]); B starts at zero as in LoRA.
/// </summary>
internal sealed class LoraPairPrototype : nn.Module
{
    internal readonly Linear lora_A;
    internal readonly Linear lora_B;

    /// <summary>
    /// Creates a rank-<paramref name="rank"/> pair for an <paramref name="inFeatures"/> →
    /// <paramref name="outFeatures"/> layer.
    /// </summary>
    public LoraPairPrototype(long inFeatures, long outFeatures, int rank) : base("lora")
    {
        (lora_A, lora_B) = LoraBranch.NewPair(inFeatures, outFeatures, rank, device: null);
        RegisterComponents();
    }
}

/// <summary>
/// The LoRA prototype: one pair shared by every layer's <c>query</c>, one by every layer's <c>value</c>.
/// </summary>
internal sealed class LoraPrototype : nn.Module
{
    internal readonly LoraPairPrototype query;
    internal readonly LoraPairPrototype value;

    /// <summary>Creates both pairs for a <paramref name="hidden"/>-wide encoder.</summary>
    public LoraPrototype(long hidden, int rank) : base("propetl_prototype")
    {
        query = new LoraPairPrototype(hidden, hidden, rank);
        value = new LoraPairPrototype(hidden, hidden, rank);
        RegisterComponents();
    }
}
