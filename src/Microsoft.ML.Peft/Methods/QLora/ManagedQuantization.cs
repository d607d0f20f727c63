using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.QLora;

/// <summary>
/// <see cref="NF4"/>'s and <see cref="Int8Absmax"/>'s quantize → dequantize round trip in managed float32 code, value
/// for value: the ONNX export must score with the weights <see cref="QuantizedLinear"/> dequantizes, and it runs
/// where libtorch may not be loaded. Each step is the same float32 operation as the tensor code, in the same order.
/// </summary>
internal static class ManagedQuantization
{
    /// <summary>The weight as <see cref="QuantizedLinear.DequantizedWeight"/> would rebuild it (a new tensor).
    /// </summary>
    public static FloatTensor RoundTrip(FloatTensor weight, int bits, int blockSize)
    {
        var source = weight.Data;
        var result = new float[source.Length];
        float[] midpoints = Midpoints();
        for (int start = 0; start < source.Length; start += blockSize)
        {
            // A short last block is zero-padded in NF4.Blocks: the padding changes no absmax.
            int end = Math.Min(start + blockSize, source.Length);
            float absmax = 0;
            for (int i = start; i < end; i++) absmax = Math.Max(absmax, Math.Abs(source[i]));
            if (!(absmax > 0)) absmax = 1; // an all-zero block, as NF4.Blocks
            for (int i = start; i < end; i++)
            {
                float normalized = source[i] / absmax;
                result[i] = bits == 4
                    ? NF4.Levels[Bucket(normalized, midpoints)] * absmax
                    : Int8Code(normalized) * (absmax / 127);
            }
        }
        return new FloatTensor((long[])weight.Shape.Clone(), result);
    }

    // The float32 midpoints between neighbouring levels, as NF4.Quantize computes them.
    private static float[] Midpoints()
    {
        var levels = NF4.Levels;
        var m = new float[levels.Length - 1];
        for (int i = 0; i < m.Length; i++) m[i] = (levels[i + 1] + levels[i]) / 2;
        return m;
    }

    // torch.bucketize (right = false): the number of boundaries strictly below x, so a value on a midpoint takes the
    // lower level.
    private static int Bucket(float x, float[] boundaries)
    {
        int code = 0;
        while (code < boundaries.Length && boundaries[code] < x) code++;
        return code;
    }

    // round(127 · w / absmax) clamped to ±127; torch.round and MathF.Round both round halves to even.
    private static float Int8Code(float normalized) => Math.Clamp(MathF.Round(normalized * 127), -127, 127);
}
