using Microsoft.ML.Peft.Tokenization;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Step 2 of the data path: rows padded to the longest one (<see cref="TokenBatch.FromRows"/>) as the encoder's
/// three int64 input tensors. The tensors join the caller's dispose scope like any other.
/// </summary>
internal readonly record struct PaddedBatch(Tensor InputIds, Tensor AttentionMask, Tensor TokenTypeIds, long RealTokens)
{
    public static PaddedBatch Collate(IReadOnlyList<TokenizedText> rows, int padTokenId, Device device)
    {
        var batch = TokenBatch.FromRows(rows, padTokenId);
        var (ids, mask, types) = batch.ToTensors(device);
        return new PaddedBatch(ids, mask, types, batch.RealTokens);
    }
}
