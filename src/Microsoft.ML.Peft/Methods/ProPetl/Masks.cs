using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.ProPetl;

/// <summary>
/// One layer's mask scores for the adapter prototype, shaped like its weights (names as ProPETL's
/// <c>AdapterSubnet</c>).
/// </summary>
internal sealed class AdapterMasks : nn.Module
{
    // Not readonly: TorchSharp swaps parameter fields when the module moves between devices.
    internal Parameter down_mask;
    internal Parameter up_mask;

    /// <summary>
    /// Scores for a <paramref name="hidden"/> → <paramref name="bottleneck"/> → <paramref name="hidden"/> adapter,
    /// Kaiming-uniform as ProPETL.
    /// </summary>
    public AdapterMasks(long hidden, long bottleneck) : base("propetl_mask")
    {
        down_mask = new Parameter(empty(bottleneck, hidden));
        up_mask = new Parameter(empty(hidden, bottleneck));
        using (no_grad())
        {
            nn.init.kaiming_uniform_(down_mask, Math.Sqrt(5));
            nn.init.kaiming_uniform_(up_mask, Math.Sqrt(5));
        }
        RegisterComponents();
    }
}

/// <summary>
/// One layer's mask scores for a shared LoRA pair (<c>lora_A_mask</c> [r, in], <c>lora_B_mask</c> [out, r]).
/// </summary>
internal sealed class LoraMasks : nn.Module
{
    internal Parameter lora_A_mask;
    internal Parameter lora_B_mask;

    /// <summary>
    /// Scores for a rank-<paramref name="rank"/> pair of an <paramref name="inFeatures"/> →
    /// <paramref name="outFeatures"/> layer.
    /// </summary>
    public LoraMasks(long inFeatures, long outFeatures, int rank) : base("propetl_mask")
    {
        lora_A_mask = new Parameter(empty(rank, inFeatures));
        lora_B_mask = new Parameter(empty(outFeatures, rank));
        using (no_grad())
        {
            nn.init.kaiming_uniform_(lora_A_mask, Math.Sqrt(5));
            nn.init.kaiming_uniform_(lora_B_mask, Math.Sqrt(5));
        }
        RegisterComponents();
    }
}
