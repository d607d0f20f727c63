namespace Microsoft.ML.Peft.Training;

/// <summary>One tokenized row: ids with special tokens, segment ids, and the target (class index or regression value).</summary>
internal readonly record struct Example(long[] InputIds, long[] TokenTypeIds, float Label)
{
    public int Length => InputIds.Length;
}
