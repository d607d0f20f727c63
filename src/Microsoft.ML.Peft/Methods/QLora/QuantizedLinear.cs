using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// A frozen linear layer whose weight is held quantized (NF4 packed two per byte, or int8) with one float32 absmax per
/// block, and dequantized to float32 on every forward. The codes are buffers: they move with the model but are never
/// trained or saved (they are recomputed from the base weights on load). The bias stays float32 and frozen.
/// </summary>
internal sealed class QuantizedLinear : nn.Module<Tensor, Tensor>, Modeling.IPackedWeights
{
    // Buffers by field name (registered by RegisterComponents because they are tensors, not parameters).
    internal Tensor weight_quant;
    internal Tensor weight_absmax;
    internal Parameter? bias;
    private readonly long[] _shape;

    /// <summary>Bits per weight code: 4 (NF4) or 8 (absmax int8).</summary>
    public int Bits { get; }

    /// <summary>Weights per absmax block.</summary>
    public int BlockSize { get; }

    /// <summary>
    /// Quantizes <paramref name="linear"/>'s weight (the caller disposes <paramref name="linear"/> afterwards).
    /// </summary>
    public QuantizedLinear(Linear linear, int bits, int blockSize) : base("quantized_linear")
    {
        if (bits is not (4 or 8))
            throw new ArgumentOutOfRangeException(nameof(bits), $"Bits must be 4 or 8, got {bits}.");
        Bits = bits;
        BlockSize = blockSize;
        var w = linear.weight!;
        _shape = w.shape;
        (weight_quant, weight_absmax) = bits == 4 ? NF4.Quantize(w, blockSize) : Int8Absmax.Quantize(w, blockSize);
        if (linear.bias is { } b) bias = new Parameter(b.detach().clone(), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>Output features.</summary>
    public long OutFeatures => _shape[0];

    /// <summary>Input features.</summary>
    public long InFeatures => _shape[1];

    long Modeling.IPackedWeights.LogicalParameterCount => _shape[0] * _shape[1];

    /// <summary>Bytes held by the quantized weight: codes plus absmax scales.</summary>
    public long QuantizedBytes =>
        weight_quant.numel() * weight_quant.ElementSize + weight_absmax.numel() * weight_absmax.ElementSize;

    /// <summary>The weight dequantized to float32 [out, in].</summary>
    public Tensor DequantizedWeight() => Bits == 4
        ? NF4.Dequantize(weight_quant, weight_absmax, _shape, BlockSize)
        : Int8Absmax.Dequantize(weight_quant, weight_absmax, _shape, BlockSize);

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var w = DequantizedWeight();
        return nn.functional.linear(x, w.to(x.dtype), bias?.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
