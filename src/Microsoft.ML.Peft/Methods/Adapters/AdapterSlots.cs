using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// Puts bottleneck adapters into the layers' residual-output blocks; shared by every adapter-based method.
/// </summary>
internal static class AdapterSlots
{
    /// <summary>
    /// Adds one adapter to each chosen block of every layer (<c>attention.output</c> and/or <c>output</c>), registered
    /// as the block's child <see cref="BottleneckAdapter.ChildName"/> so that its parameters are named, trained and
    /// saved.
    /// </summary>
    public static void Insert(PeftModel model, bool attention, bool ffn, Func<int, BottleneckAdapter> create)
    {
        int hidden = model.Encoder.Config.HiddenSize;
        foreach (var layer in model.Encoder.Layers)
        {
            if (attention) Put(layer.attention.output, create(hidden));
            if (ffn) Put(layer.output, create(hidden));
        }
    }

    private static void Put(BertResidualOutput block, BottleneckAdapter adapter)
    {
        if (block.Adapter is not null)
            throw new InvalidOperationException(
                "This encoder block already carries an adapter; attach one adapter method per model.");
        block.register_module(BottleneckAdapter.ChildName, adapter);
        block.Adapter = adapter;
    }

    /// <summary>True for the parameters <see cref="Insert"/> creates.</summary>
    public static bool IsAdapterParameter(string name) =>
        name.StartsWith("bert.", StringComparison.Ordinal)
        && name.Contains("." + BottleneckAdapter.ChildName + ".adapter_", StringComparison.Ordinal);

    /// <summary>Bottleneck width for a reduction factor, as AdapterHub (<c>hidden // reduction_factor</c>).</summary>
    public static int Bottleneck(int hidden, int reductionFactor) => Math.Max(1, hidden / reductionFactor);
}
