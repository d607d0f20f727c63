using TorchSharp;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// A padded batch of encoded sequences. Every field is one flat row-major array of shape
/// [<see cref="BatchSize"/>, <see cref="SequenceLength"/>], ready to hand to <c>torch.tensor</c> without reshaping.
/// <see cref="SequenceLength"/> is the length of the longest row (not the maximum length requested); shorter rows are
/// right-padded with the tokenizer's pad id, attention mask 0 and token type 0.
/// </summary>
public sealed class TokenBatch
{
    /// <summary>Creates a batch from flat arrays (not copied).</summary>
    /// <exception cref="ArgumentException">An array's length does not match the shape.</exception>
    public TokenBatch(long[] inputIds, long[] attentionMask, long[] tokenTypeIds, int batchSize, int sequenceLength,
        int[] lengths)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(attentionMask);
        ArgumentNullException.ThrowIfNull(tokenTypeIds);
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfNegative(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(sequenceLength);
        long n = (long)batchSize * sequenceLength;
        if (inputIds.Length != n || attentionMask.Length != n || tokenTypeIds.Length != n)
        {
            throw new ArgumentException($"Each array must hold batchSize * sequenceLength = {n} values.");
        }
        if (lengths.Length != batchSize)
        {
            throw new ArgumentException($"lengths must hold {batchSize} values.", nameof(lengths));
        }
        InputIds = inputIds;
        AttentionMask = attentionMask;
        TokenTypeIds = tokenTypeIds;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        Lengths = lengths;
    }

    /// <summary>
    /// Pads <paramref name="rows"/> to the longest one: the single padding routine behind
    /// <see cref="TextTokenizer.EncodeBatch"/>, training batches and scoring batches.
    /// </summary>
    internal static TokenBatch FromRows(IReadOnlyList<TokenizedText> rows, int padTokenId)
    {
        int n = rows.Count, length = 0;
        foreach (var row in rows) length = Math.Max(length, row.Length);
        var ids = new long[(long)n * length];
        var mask = new long[ids.Length];
        var types = new long[ids.Length];
        var lengths = new int[n];
        if (padTokenId != 0) Array.Fill(ids, padTokenId);
        for (int r = 0; r < n; r++)
        {
            var row = rows[r];
            int offset = r * length;
            for (int i = 0; i < row.Length; i++)
            {
                ids[offset + i] = row.InputIds[i];
                types[offset + i] = row.TokenTypeIds[i];
            }
            mask.AsSpan(offset, row.Length).Fill(1);
            lengths[r] = row.Length;
        }
        return new TokenBatch(ids, mask, types, n, length, lengths);
    }

    /// <summary>Number of real (unpadded) tokens in the batch.</summary>
    internal long RealTokens => Lengths.Sum(l => (long)l);

    /// <summary>Token ids, [BatchSize, SequenceLength] row-major; padding uses the tokenizer's pad id.</summary>
    public long[] InputIds { get; }

    /// <summary>
    /// 1 for real tokens (special tokens included), 0 for padding; [BatchSize, SequenceLength] row-major.
    /// </summary>
    public long[] AttentionMask { get; }

    /// <summary>Segment ids, [BatchSize, SequenceLength] row-major; 0 for padding.</summary>
    public long[] TokenTypeIds { get; }

    /// <summary>Number of rows.</summary>
    public int BatchSize { get; }

    /// <summary>Length of every row after padding (the longest unpadded row).</summary>
    public int SequenceLength { get; }

    /// <summary>Unpadded length of each row, special tokens included.</summary>
    public int[] Lengths { get; }

    /// <summary>
    /// The three arrays as int64 tensors of shape [BatchSize, SequenceLength] on <paramref name="device"/> (CPU when
    /// null). <c>torch.tensor</c> copies each flat array once (checked with TorchSharp 0.107), so the batch may be
    /// reused or modified afterwards. The caller owns the tensors (dispose them, e.g. through a
    /// <c>torch.NewDisposeScope()</c> per batch).
    /// </summary>
    public (torch.Tensor InputIds, torch.Tensor AttentionMask, torch.Tensor TokenTypeIds) ToTensors(
        torch.Device? device = null)
    {
        long[] shape = [BatchSize, SequenceLength];
        torch.Tensor ids = torch.tensor(InputIds, shape, torch.int64, device);
        torch.Tensor mask = torch.tensor(AttentionMask, shape, torch.int64, device);
        torch.Tensor types = torch.tensor(TokenTypeIds, shape, torch.int64, device);
        return (ids, mask, types);
    }
}
