using System.Text.Json.Nodes;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Methods.Dora;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.Lora;

/// <summary>
/// LoRA, rsLoRA and DoRA as <c>peft</c>'s <c>LORA</c> adapter: the keys of <c>LoraConfig</c>
/// (peft/tuners/lora/config.py) and the tensor names <c>get_peft_model_state_dict</c> writes
/// (peft/utils/save_and_load.py): <c>...query.lora_A.weight</c>, <c>...query.lora_B.weight</c> and, for DoRA,
/// <c>...query.lora_magnitude_vector</c> (peft drops the magnitude module's <c>.weight</c> so the format predates its
/// refactor).
/// </summary>
internal sealed class LoraPeftMapping(LowRankConfigBase config) : PeftAdapterMapping
{
    private const string Magnitude = ".lora_magnitude_vector";

    public override string PeftType => "LORA";

    public override void WriteConfig(JsonObject o, Modeling.EncoderConfig encoder)
    {
        o["r"] = config.Rank;
        o["lora_alpha"] = config.Alpha;
        o["lora_dropout"] = config.Dropout;
        o["target_modules"] = TargetModules(config.TargetModules, config.TargetModulesPattern);
        o["use_rslora"] = config.UseRsLora;
        o["use_dora"] = config is DoraConfig;
        o["bias"] = config is LoraConfig l ? BiasName(l.Bias) : "none";
        o["fan_in_fan_out"] = false;
        o["init_lora_weights"] = true;
        o["layers_to_transform"] = null;
        o["layers_pattern"] = null;
        o["rank_pattern"] = new JsonObject();
        o["alpha_pattern"] = new JsonObject();
    }

    /// <summary>
    /// <c>target_modules</c> as <c>peft</c> reads it: the same suffix names, DistilBERT aliases in BERT's names (peft
    /// matches a name exactly or as the end of the module path after a dot, as <see cref="TargetResolver"/> does),
    /// <c>all-linear</c>, or, for a pattern, a regex string. This library's pattern may match the path with or
    /// without its <c>bert.</c> start; peft full-matches the path with it, so both forms go in the alternation.
    /// </summary>
    internal static JsonNode TargetModules(string[] names, string? pattern) => pattern is not null
        ? JsonValue.Create($"(?:{pattern})|bert\\.(?:{pattern})")
        : new JsonArray(names.Select(n => (JsonNode)JsonValue.Create(
            Modeling.CheckpointNames.DistilBertModuleAliases.TryGetValue(n, out var bert) ? bert : n)).ToArray());

    private static string BiasName(LoraBias b) => b switch
    {
        LoraBias.All => "all",
        LoraBias.LoraOnly => "lora_only",
        _ => "none",
    };

    public override IEnumerable<KeyValuePair<string, FloatTensor>> ToPeft(
        IEnumerable<KeyValuePair<string, FloatTensor>> trained) => trained.Select(kv =>
            KeyValuePair.Create(kv.Key.EndsWith(Magnitude + ".weight", StringComparison.Ordinal)
                ? kv.Key[..^".weight".Length]
                : kv.Key, kv.Value));

    public override string FromPeftName(string peftName) =>
        peftName.EndsWith(Magnitude, StringComparison.Ordinal) ? peftName + ".weight" : peftName;

    /// <summary>The method an adapter of type <c>LORA</c> describes: DoRA when <c>use_dora</c>, else LoRA.</summary>
    internal static LowRankConfigBase Read(AdapterConfigJson c)
    {
        RequireAbsent(c, "layers_to_transform");
        RequireAbsent(c, "rank_pattern");
        RequireAbsent(c, "alpha_pattern");
        // Newer peft keys whose non-default values change which layers adapt or what they hold.
        RequireAbsent(c, "exclude_modules");
        RequireAbsent(c, "layer_replication");
        if (c.Bool("lora_bias", false))
            throw c.Error("lora_bias", "is true; this library's LoRA B has no bias.");
        if (c.Bool("fan_in_fan_out", false))
            throw c.Error("fan_in_fan_out", "is true; BERT-family encoders store linear weights as [out, in].");
        string bias = c.String("bias") ?? "none";
        LowRankConfigBase method = c.Bool("use_dora", false)
            ? new DoraConfig()
            : new LoraConfig
            {
                Bias = bias switch
                {
                    "none" => LoraBias.None,
                    "all" => LoraBias.All,
                    "lora_only" => LoraBias.LoraOnly,
                    _ => throw c.Error("bias", $"must be none, all or lora_only, got '{bias}'."),
                },
            };
        if (method is DoraConfig && bias != "none")
            throw c.Error("bias", $"is '{bias}'; this library's DoRA trains no biases.");
        // peft's LoraConfig defaults (peft/tuners/lora/config.py): r 8, lora_alpha 8, lora_dropout 0.
        method.Rank = c.Int("r", 8);
        method.Alpha = c.Double("lora_alpha", 8);
        method.Dropout = c.Double("lora_dropout", 0);
        method.UseRsLora = c.Bool("use_rslora", false);
        (method.TargetModules, method.TargetModulesPattern) = Targets(c);
        return method;
    }

    internal static (string[] Names, string? Pattern) Targets(AdapterConfigJson c)
    {
        var (names, pattern) = c.Modules("target_modules");
        if (names.Length == 0 && pattern is null)
            throw c.Error("target_modules", "is missing; this library needs the adapted modules named.");
        return (names, pattern);
    }

    /// <summary>Refuses a key whose non-empty value this library cannot honour (per-module ranks, layer subsets).
    /// </summary>
    internal static void RequireAbsent(AdapterConfigJson c, string key)
    {
        var v = c.Node[key];
        bool empty = v is null || (v is JsonObject o && o.Count == 0) || (v is JsonArray a && a.Count == 0);
        if (!empty)
            throw c.Error(key, $"is set ({v!.ToJsonString()}); this library supports adapters without it.");
    }
}
