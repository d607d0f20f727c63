using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>libtorch tensors ↔ <see cref="FloatTensor"/>s, at the edges where managed weights meet libtorch.</summary>
internal static class TorchWeights
{
    /// <summary>Float32 managed copies of <paramref name="tensors"/>, names prefixed with <paramref name="prefix"/>.
    /// </summary>
    public static Dictionary<string, FloatTensor> ToManaged(IReadOnlyDictionary<string, Tensor> tensors,
        string prefix = "")
    {
        var result = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            using var f = t.detach().cpu().to(ScalarType.Float32).contiguous();
            result[prefix + name] = new FloatTensor(f.shape, f.data<float>().ToArray());
        }
        return result;
    }

    /// <summary>New CPU libtorch tensors holding copies of <paramref name="tensors"/>' values.</summary>
    public static Dictionary<string, Tensor> ToTorch(IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, t) in tensors)
            {
                // empty + copy into libtorch's own (aligned) storage: torch.tensor(array) would wrap the pinned
                // managed array, which the caller may change and whose alignment libtorch's kernels do not expect.
                var copy = empty(t.Shape, ScalarType.Float32);
                result[name] = copy;
                MemoryMarshal.AsBytes(t.Data.AsSpan()).CopyTo(copy.bytes);
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }
}
