using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.IA3;

/// <summary>
/// (IA)³ as <c>peft</c>'s <c>IA3</c> adapter: <c>IA3Config</c>'s keys (peft/tuners/ia3/config.py) and one vector per
/// layer, <c>...key.ia3_l</c> [out, 1] or, feed-forward, <c>...output.dense.ia3_l</c> [1, in]
/// (peft/tuners/ia3/layer.py).
/// </summary>
/// <remarks>
/// Modules go out as exact paths: peft matches <c>output.dense</c> as a suffix, which also catches
/// <c>attention.output.dense</c>, where this library's option means the feed-forward projection only. Coming in, the
/// adapted modules and their placement are read from the vectors themselves, so peft's broader matching gives the
/// layers peft adapted.
/// </remarks>
internal sealed class IA3PeftMapping : PeftAdapterMapping
{
    private const string Suffix = ".ia3_l";

    public override string PeftType => "IA3";

    public override void WriteConfig(JsonObject o, Modeling.EncoderConfig encoder)
    {
        o["target_modules"] = Paths(_names);
        o["feedforward_modules"] = Paths(_feedforward);
        o["fan_in_fan_out"] = false;
        o["init_ia3_weights"] = true;
    }

    // Filled by ToPeft (which the writer calls first) from the vectors and their shapes ([1, in] is feed-forward).
    private readonly List<string> _names = [];
    private readonly List<string> _feedforward = [];

    public override IEnumerable<KeyValuePair<string, FloatTensor>> ToPeft(
        IEnumerable<KeyValuePair<string, FloatTensor>> trained)
    {
        var list = trained.ToList();
        _names.Clear();
        _names.AddRange(list.Select(kv => kv.Key));
        _feedforward.Clear();
        _feedforward.AddRange(list.Where(kv => IsFeedforward(kv.Value)).Select(kv => kv.Key));
        return list;
    }

    private static bool IsFeedforward(FloatTensor t) => t.Shape.Length == 2 && t.Shape[0] == 1 && t.Shape[1] > 1;

    private static JsonArray Paths(IEnumerable<string> names) => new(names
        .Where(n => n.EndsWith(Suffix, StringComparison.Ordinal))
        .Select(n => (JsonNode)JsonValue.Create(n[..^Suffix.Length])).ToArray());

    /// <summary>
    /// The method an <c>IA3</c> adapter describes: the layers that have a vector, feed-forward where it is [1, in].
    /// Every <c>target_modules</c> entry must name at least one of them (peft's rule: the whole path, the end of it
    /// after a dot, or a regex that matches the whole path).
    /// </summary>
    internal static IA3Config Read(AdapterConfigJson c, IReadOnlyDictionary<string, FloatTensor> tensors)
    {
        var vectors = tensors.Where(kv => kv.Key.EndsWith(Suffix, StringComparison.Ordinal))
            .Select(kv => (Path: kv.Key[..^Suffix.Length], Feedforward: IsFeedforward(kv.Value))).ToList();
        var (names, pattern) = Lora.LoraPeftMapping.Targets(c);
        if (pattern is not null && !vectors.Any(v => Regex.IsMatch(v.Path, "^(?:" + pattern + ")$")))
            throw c.Error("target_modules", $"('{pattern}') matches no module of this adapter.");
        foreach (var given in names)
        {
            // DistilBERT adapters name DistilBERT's modules (k_lin, lin2); the vectors carry BERT's names by now.
            string name = Modeling.CheckpointNames.DistilBertModuleAliases.TryGetValue(given, out var bert)
                ? bert : given;
            if (!vectors.Any(v => v.Path == name || v.Path.EndsWith("." + name, StringComparison.Ordinal)))
                throw c.Error("target_modules", $"entry '{given}' matches no module of this adapter.");
        }
        if (vectors.Count == 0)
            throw new MLNet.PeftModelFormatException($"{c.File}: the adapter holds no '*.ia3_l' vector.");
        return new IA3Config
        {
            TargetModules = vectors.Select(v => v.Path).ToArray(),
            FeedforwardModules = vectors.Where(v => v.Feedforward).Select(v => v.Path).ToArray(),
        };
    }
}
