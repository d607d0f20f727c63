using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>Pads a batch of rows to its longest row and builds the input tensors in one copy per field.</summary>
internal static class Collator
{
    public static (Tensor Ids, Tensor Mask, Tensor Types, long RealTokens) Collate(IReadOnlyList<Example> rows, IReadOnlyList<int> indices, long padId, Device device)
    {
        int b = indices.Count, s = 0;
        foreach (int i in indices) s = Math.Max(s, rows[i].Length);
        var ids = new long[b * s];
        var mask = new long[b * s];
        var types = new long[b * s];
        long real = 0;
        if (padId != 0) Array.Fill(ids, padId);
        for (int r = 0; r < b; r++)
        {
            var e = rows[indices[r]];
            e.InputIds.CopyTo(ids, r * s);
            e.TokenTypeIds.CopyTo(types, r * s);
            mask.AsSpan(r * s, e.Length).Fill(1);
            real += e.Length;
        }
        long[] shape = [b, s];
        return (tensor(ids, shape, device: device), tensor(mask, shape, device: device), tensor(types, shape, device: device), real);
    }
}
