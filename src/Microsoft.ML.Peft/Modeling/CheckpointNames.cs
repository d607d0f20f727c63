using System.Text.RegularExpressions;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>
/// Maps parameter names found in Hugging Face checkpoints onto <see cref="BertModel"/>'s names: strips task-model
/// prefixes (<c>bert.</c>, <c>roberta.</c>, <c>distilbert.</c>), renames old LayerNorm <c>gamma</c>/<c>beta</c>,
/// and renames DistilBERT's modules (<c>transformer.layer.N.attention.q_lin</c> →
/// <c>encoder.layer.N.attention.self.query</c>).
/// </summary>
internal static partial class CheckpointNames
{
    private static readonly (Regex From, string To)[] DistilBertRules =
    [
        (Rx(@"^transformer\.layer\.(\d+)\.attention\.q_lin\."), "encoder.layer.$1.attention.self.query."),
        (Rx(@"^transformer\.layer\.(\d+)\.attention\.k_lin\."), "encoder.layer.$1.attention.self.key."),
        (Rx(@"^transformer\.layer\.(\d+)\.attention\.v_lin\."), "encoder.layer.$1.attention.self.value."),
        (Rx(@"^transformer\.layer\.(\d+)\.attention\.out_lin\."), "encoder.layer.$1.attention.output.dense."),
        (Rx(@"^transformer\.layer\.(\d+)\.sa_layer_norm\."), "encoder.layer.$1.attention.output.LayerNorm."),
        (Rx(@"^transformer\.layer\.(\d+)\.ffn\.lin1\."), "encoder.layer.$1.intermediate.dense."),
        (Rx(@"^transformer\.layer\.(\d+)\.ffn\.lin2\."), "encoder.layer.$1.output.dense."),
        (Rx(@"^transformer\.layer\.(\d+)\.output_layer_norm\."), "encoder.layer.$1.output.LayerNorm."),
    ];

    /// <summary>
    /// DistilBERT's short module names and the Hugging Face BERT names they stand for, for PEFT target lists.
    /// </summary>
    public static IReadOnlyDictionary<string, string> DistilBertModuleAliases { get; } = new Dictionary<string, string>
    {
        ["q_lin"] = "query", ["k_lin"] = "key", ["v_lin"] = "value", ["out_lin"] = "attention.output.dense",
        ["lin1"] = "intermediate.dense", ["lin2"] = "output.dense",
    };

    /// <summary>
    /// Returns the <see cref="BertModel"/> name for a checkpoint name, or null for names the encoder does not use (task
    /// heads).
    /// </summary>
    public static string? ToEncoderName(string checkpointName, EncoderArchitecture architecture)
    {
        string n = checkpointName;
        foreach (var prefix in new[] { "bert.", "roberta.", "distilbert.", "model." })
            if (n.StartsWith(prefix, StringComparison.Ordinal)) { n = n[prefix.Length..]; break; }
        if (n.EndsWith(".gamma", StringComparison.Ordinal)) n = n[..^6] + ".weight";
        else if (n.EndsWith(".beta", StringComparison.Ordinal)) n = n[..^5] + ".bias";
        if (architecture == EncoderArchitecture.DistilBert)
            foreach (var (from, to) in DistilBertRules)
                if (from.IsMatch(n)) return from.Replace(n, to);
        if (n.StartsWith("embeddings.", StringComparison.Ordinal) || n.StartsWith("encoder.", StringComparison.Ordinal)
            || n.StartsWith("pooler.", StringComparison.Ordinal))
            return n.EndsWith("position_ids", StringComparison.Ordinal) ? null : n;
        return null;
    }

    private static Regex Rx(string pattern) => new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
}
