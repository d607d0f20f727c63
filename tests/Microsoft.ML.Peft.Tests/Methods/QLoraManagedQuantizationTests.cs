using Microsoft.ML.Peft.Methods.QLora;
using Microsoft.ML.Peft.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// The ONNX export rebuilds QLoRA's dequantized weights in managed code; they must equal the tensor code's bit for
/// bit, including a short last block, an all-zero block and values that fall exactly on a midpoint between levels.
/// </summary>
[TestClass]
public sealed class QLoraManagedQuantizationTests
{
    [TestMethod]
    [DataRow(4)]
    [DataRow(8)]
    public void ManagedRoundTripEqualsTheTensorCode(int bits)
    {
        torch.manual_seed(3);
        const int blockSize = 16;
        // 7 × 13 = 91 values: five full blocks and a short one; the second block is all zeros.
        using var w = randn(7, 13) * 0.05;
        using (no_grad()) w.view(-1)[blockSize..(2 * blockSize)].zero_();
        // The third block holds 1 (its absmax) and every NF4 midpoint, so ties are decided as bucketize decides them.
        var midpoints = Enumerable.Range(1, NF4.Levels.Length - 1)
            .Select(i => (NF4.Levels[i] + NF4.Levels[i - 1]) / 2).Prepend(1f).ToArray();
        using (no_grad()) w.view(-1)[(2 * blockSize)..(2 * blockSize + midpoints.Length)].copy_(tensor(midpoints));

        var (codes, absmax) = bits == 4 ? NF4.Quantize(w, blockSize) : Int8Absmax.Quantize(w, blockSize);
        using var expected = bits == 4 ? NF4.Dequantize(codes, absmax, w.shape, blockSize)
            : Int8Absmax.Dequantize(codes, absmax, w.shape, blockSize);
        codes.Dispose(); absmax.Dispose();

        var managed = ManagedQuantization.RoundTrip(new FloatTensor(w.shape, w.data<float>().ToArray()), bits,
            blockSize);
        CollectionAssert.AreEqual(expected.shape, managed.Shape);
        CollectionAssert.AreEqual(expected.data<float>().ToArray(), managed.Data);
    }
}
