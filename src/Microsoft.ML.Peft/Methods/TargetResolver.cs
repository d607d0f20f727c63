using System.Text.RegularExpressions;
using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;

namespace Microsoft.ML.Peft.Methods;

/// <summary>Resolves <c>peft</c>-style target-module names to the encoder's linear layers.</summary>
internal static class TargetResolver
{
    public static IReadOnlyList<string> Resolve(PeftModel model, string[] targets, string? pattern, string optionName)
    {
        var linears = ModuleSurgery.NamedModules(model)
            .Where(m => m.Module is Linear && m.Path.StartsWith("bert.", StringComparison.Ordinal)
                && !m.Path.StartsWith("bert.pooler.", StringComparison.Ordinal))
            .Select(m => m.Path)
            .ToList();
        List<string> chosen;
        if (pattern is not null)
        {
            var rx = new Regex("^(?:" + pattern + ")$");
            chosen = linears.Where(p => rx.IsMatch(p) || rx.IsMatch(p["bert.".Length..])).ToList();
            if (chosen.Count == 0)
                throw new ArgumentException($"Option 'TargetModulesPattern' ('{pattern}') matches no linear layer. " +
                    $"Examples: {string.Join(", ", linears.Take(6))}.");
            return chosen;
        }
        if (targets.Length == 1 && targets[0] == "all-linear") return linears;
        var names = targets
            .Select(t => CheckpointNames.DistilBertModuleAliases.TryGetValue(t, out var a) ? a : t)
            .ToArray();
        // As peft's check_target_module_exists (peft/tuners/tuners_utils.py): the whole path, or its end after a dot.
        static bool Matches(string path, string name) =>
            path == name || path.EndsWith("." + name, StringComparison.Ordinal);
        chosen = linears.Where(p => names.Any(n => Matches(p, n))).ToList();
        var unmatched = names.Where(n => !linears.Any(p => Matches(p, n))).ToList();
        if (unmatched.Count > 0)
            throw new ArgumentException(
                $"Option '{optionName}' names modules that are not linear layers of this encoder: " +
                $"{string.Join(", ", unmatched)}. " +
                "Known names: query, key, value, attention.output.dense, intermediate.dense, output.dense " +
                "(or 'all-linear').");
        return chosen;
    }
}
