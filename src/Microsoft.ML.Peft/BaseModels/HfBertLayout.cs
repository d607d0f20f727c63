using Microsoft.ML.Peft.Modeling;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// The Hugging Face <c>BertModel</c> state-dict names and shapes for a configuration, in checkpoint order.
/// </summary>
internal static class HfBertLayout
{
    public static List<(string Name, long[] Shape)> Expected(EncoderConfig c, bool withPooler)
    {
        long h = c.HiddenSize, i = c.IntermediateSize;
        var list = new List<(string, long[])>
        {
            ("embeddings.word_embeddings.weight", [c.VocabSize, h]),
            ("embeddings.position_embeddings.weight", [c.MaxPositionEmbeddings, h]),
        };
        if (c.TypeVocabSize > 0) list.Add(("embeddings.token_type_embeddings.weight", [c.TypeVocabSize, h]));
        list.Add(("embeddings.LayerNorm.weight", [h]));
        list.Add(("embeddings.LayerNorm.bias", [h]));
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (var m in new[]
                { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense" })
            {
                list.Add((p + m + ".weight", [h, h]));
                list.Add((p + m + ".bias", [h]));
            }
            list.Add((p + "attention.output.LayerNorm.weight", [h]));
            list.Add((p + "attention.output.LayerNorm.bias", [h]));
            list.Add((p + "intermediate.dense.weight", [i, h]));
            list.Add((p + "intermediate.dense.bias", [i]));
            list.Add((p + "output.dense.weight", [h, i]));
            list.Add((p + "output.dense.bias", [h]));
            list.Add((p + "output.LayerNorm.weight", [h]));
            list.Add((p + "output.LayerNorm.bias", [h]));
        }
        if (withPooler)
        {
            list.Add(("pooler.dense.weight", [h, h]));
            list.Add(("pooler.dense.bias", [h]));
        }
        return list;
    }

    /// <summary>
    /// Lists missing, unexpected and mis-shaped tensors; empty when <paramref name="actual"/> fits exactly.
    /// </summary>
    public static List<string> Compare(IEnumerable<(string Name, long[] Shape)> expected,
        IReadOnlyDictionary<string, long[]> actual)
    {
        var problems = new List<string>();
        var expectedNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            expectedNames.Add(name);
            if (!actual.TryGetValue(name, out var got)) problems.Add($"missing {name} [{string.Join(",", shape)}]");
            else if (!got.SequenceEqual(shape))
                problems.Add($"{name} is [{string.Join(",", got)}], expected [{string.Join(",", shape)}]");
        }
        foreach (var name in actual.Keys)
            if (!expectedNames.Contains(name)) problems.Add($"unexpected {name} [{string.Join(",", actual[name])}]");
        return problems;
    }
}
