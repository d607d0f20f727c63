using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>libtorch tensors → <see cref="FloatTensor"/>s, for exports from a stage that lives in libtorch.</summary>
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
}
