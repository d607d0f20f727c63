using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// Blockwise 4-bit NormalFloat quantization (Dettmers et al., 2023): each block of <c>blockSize</c> consecutive weights
/// is scaled by its absolute maximum into [−1, 1] and each value is replaced by the index of the nearest of 16 levels
/// (quantiles of a standard normal, with an exact zero); two 4-bit indices are packed per byte (first in the high
/// nibble).
/// All work is done with tensor operations, no per-element loops.
/// </summary>
internal static class NF4
{
    /// <summary>The 16 NF4 levels of the QLoRA paper (bitsandbytes' table), ascending.</summary>
    public static readonly float[] Levels =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>
    /// The largest gap between neighbouring levels (between 0.7230 and 1.0): twice the worst rounding error on the
    /// [−1, 1] scale.
    /// </summary>
    public static float LargestGap => Enumerable.Range(1, Levels.Length - 1).Max(i => Levels[i] - Levels[i - 1]);

    /// <summary>
    /// Quantizes <paramref name="weight"/> (any shape): returns the packed codes (uint8, ⌈n / 2⌉ after padding n to
    /// whole blocks) and one float32 absmax per block.
    /// </summary>
    public static (Tensor Packed, Tensor Absmax) Quantize(Tensor weight, int blockSize)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (blocks, absmax) = Blocks(weight, blockSize);
        var normalized = blocks / absmax.unsqueeze(1);
        // The nearest level is found by bucketing against the midpoints between neighbouring levels.
        using var levels = tensor(Levels, device: weight.device);
        var midpoints = (levels[1..] + levels[..^1]) / 2;
        var codes = bucketize(normalized.reshape(-1).contiguous(), midpoints).view(-1, 2);
        var packed = (codes[.., 0] * 16 + codes[.., 1]).to(ScalarType.Byte);
        return (packed.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>Rebuilds a float32 tensor of <paramref name="shape"/> from <see cref="Quantize"/>'s output.</summary>
    public static Tensor Dequantize(Tensor packed, Tensor absmax, long[] shape, int blockSize)
    {
        using var scope = NewDisposeScope();
        var wide = packed.to(ScalarType.Int64);
        var codes = stack([wide.div(16, RoundingMode.floor), wide.remainder(16)], 1).view(-1);
        using var levels = tensor(Levels, device: packed.device);
        var values = levels.index_select(0, codes).view(-1, blockSize) * absmax.unsqueeze(1);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        return values.view(-1)[..(int)n].view(shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The weight as float32 blocks [blocks, blockSize] (zero-padded to whole blocks) and each block's absolute maximum
    /// (1 for an all-zero block, so dividing by it is safe and zero maps to level 0).
    /// </summary>
    internal static (Tensor Blocks, Tensor Absmax) Blocks(Tensor weight, int blockSize)
    {
        using var scope = NewDisposeScope();
        var flat = weight.detach().to(ScalarType.Float32).reshape(-1);
        long pad = (blockSize - flat.shape[0] % blockSize) % blockSize;
        if (pad > 0) flat = cat([flat, zeros(pad, device: flat.device)], 0);
        var blocks = flat.view(-1, blockSize);
        var absmax = blocks.abs().amax([1]);
        absmax = where(absmax > 0, absmax, ones_like(absmax));
        return (blocks.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// Blockwise absmax int8 quantization (LLM.int8-style, without outlier handling): code = round(127 · w / absmax).
/// </summary>
internal static class Int8Absmax
{
    /// <summary>
    /// Quantizes <paramref name="weight"/>: int8 codes (padded to whole blocks) and one float32 absmax per block.
    /// </summary>
    public static (Tensor Codes, Tensor Absmax) Quantize(Tensor weight, int blockSize)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (blocks, absmax) = NF4.Blocks(weight, blockSize);
        var codes = (blocks / absmax.unsqueeze(1) * 127).round().clamp(-127, 127).to(ScalarType.Int8).view(-1);
        return (codes.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>Rebuilds a float32 tensor of <paramref name="shape"/> from <see cref="Quantize"/>'s output.</summary>
    public static Tensor Dequantize(Tensor codes, Tensor absmax, long[] shape, int blockSize)
    {
        using var scope = NewDisposeScope();
        var values = codes.to(ScalarType.Float32).view(-1, blockSize) * (absmax / 127).unsqueeze(1);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        return values.view(-1)[..(int)n].view(shape).MoveToOuterDisposeScope();
    }
}
