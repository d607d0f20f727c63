using System.Text.Json.Nodes;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Methods.Lora;

namespace Microsoft.ML.Peft.Methods.AdaLora;

/// <summary>
/// AdaLoRA as <c>peft</c>'s <c>ADALORA</c> adapter: <c>AdaLoraConfig</c>'s keys (peft/tuners/adalora/config.py, a
/// <c>LoraConfig</c> subclass) and the SVD triplets <c>...query.lora_A</c> [r, in], <c>lora_E</c> [r, 1],
/// <c>lora_B</c> [out, r] at the initial rank, pruned values zero. <c>rank_pattern</c> is left null, so peft rebuilds
/// every layer at <c>init_r</c> and scales by <c>lora_alpha / (init_r + 1e-5)</c> (peft/tuners/adalora/layer.py),
/// as this library does.
/// </summary>
internal sealed class AdaLoraPeftMapping(AdaLoraConfig config) : PeftAdapterMapping
{
    // peft counts the budget schedule in steps; this library in fractions of the run, so the schedule goes out over a
    // nominal run of this many steps (it matters only to someone who trains the adapter further in peft).
    private const int NominalSteps = 1000;

    public override string PeftType => "ADALORA";

    public override void WriteConfig(JsonObject o, Modeling.EncoderConfig encoder)
    {
        // peft ignores LoraConfig's r for AdaLoRA and warns unless it is left at its default 8.
        o["r"] = 8;
        o["init_r"] = config.InitialRank;
        o["target_r"] = config.TargetRank;
        o["lora_alpha"] = config.Alpha;
        o["lora_dropout"] = config.Dropout;
        o["target_modules"] = LoraPeftMapping.TargetModules(config.TargetModules, config.TargetModulesPattern);
        o["tinit"] = (int)Math.Round(config.InitialWarmupFraction * NominalSteps);
        o["tfinal"] = (int)Math.Round(config.FinalFraction * NominalSteps);
        o["total_step"] = NominalSteps;
        o["deltaT"] = config.DeltaT;
        o["beta1"] = config.Beta1;
        o["beta2"] = config.Beta2;
        o["orth_reg_weight"] = config.OrthRegWeight;
        o["rank_pattern"] = null;
        o["bias"] = "none";
        o["use_rslora"] = false;
        o["use_dora"] = false;
        o["fan_in_fan_out"] = false;
        o["init_lora_weights"] = true;
    }

    /// <summary>The method an <c>ADALORA</c> adapter describes (peft's defaults where a key is absent).</summary>
    internal static AdaLoraConfig Read(AdapterConfigJson c)
    {
        // A rank pattern means the file holds pruned (smaller) triplets, which peft then scales by the pruned rank.
        LoraPeftMapping.RequireAbsent(c, "rank_pattern");
        LoraPeftMapping.RequireAbsent(c, "layers_to_transform");
        if ((c.String("bias") ?? "none") != "none")
            throw c.Error("bias", "must be 'none' for AdaLoRA in this library.");
        int total = c.Int("total_step", 0);
        double warmup = total > 0 ? c.Int("tinit", 0) / (double)total : -1;
        double final = total > 0 ? c.Int("tfinal", 0) / (double)total : -1;
        // A schedule that does not fit this library's fractions falls back to its defaults: it only shapes training.
        if (warmup < 0 || final < 0 || warmup + final >= 1) (warmup, final) = (0.1, 0.2);
        var (names, pattern) = LoraPeftMapping.Targets(c);
        return new AdaLoraConfig
        {
            InitialRank = c.Int("init_r", 12),
            TargetRank = c.Int("target_r", 8),
            Alpha = c.Double("lora_alpha", 8),
            Dropout = c.Double("lora_dropout", 0),
            TargetModules = names,
            TargetModulesPattern = pattern,
            DeltaT = c.Int("deltaT", 1),
            Beta1 = c.Double("beta1", 0.85),
            Beta2 = c.Double("beta2", 0.85),
            OrthRegWeight = c.Double("orth_reg_weight", 0.5),
            InitialWarmupFraction = warmup,
            FinalFraction = final,
        };
    }
}
