using System.Reflection;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>
/// Finds and replaces submodules by their dotted Hugging Face path, the way <c>peft</c> swaps a
/// <c>Linear</c> for a LoRA layer with <c>setattr(parent, name, new)</c>.
/// </summary>
/// <remarks>
/// Our modules keep each replaceable child in a field named exactly as the child is registered
/// (TorchSharp's <c>RegisterComponents</c> convention), so a swap updates both the field that <c>forward</c>
/// reads and the registration that <c>named_parameters</c>/<c>state_dict</c> walk.
/// </remarks>
internal static class ModuleSurgery
{
    private static readonly FieldInfo SubmodulesField = typeof(nn.Module)
        .GetField("_internal_submodules", BindingFlags.NonPublic | BindingFlags.Instance)
        ?? throw new MissingFieldException(
            "TorchSharp's Module._internal_submodules was not found; this TorchSharp version is not supported.");

    /// <summary>
    /// Returns the submodule at <paramref name="path"/> (e.g. <c>encoder.layer.0.attention.self.query</c>).
    /// </summary>
    public static nn.Module Get(nn.Module root, string path)
    {
        nn.Module current = root;
        foreach (var part in path.Split('.'))
        {
            var children = Children(current);
            if (!children.TryGetValue(part, out var next))
                throw new ArgumentException(
                    $"Module path '{path}' does not exist: '{current.GetName()}' has no child '{part}'.");
            current = next;
        }
        return current;
    }

    /// <summary>
    /// Replaces the submodule at <paramref name="path"/> with <paramref name="replacement"/>. The old module is
    /// returned, not disposed, since replacements usually wrap it.
    /// </summary>
    public static nn.Module Replace(nn.Module root, string path, nn.Module replacement)
    {
        int dot = path.LastIndexOf('.');
        var parent = dot < 0 ? root : Get(root, path[..dot]);
        string name = path[(dot + 1)..];
        var children = Children(parent);
        if (!children.TryGetValue(name, out var old))
            throw new ArgumentException($"Module path '{path}' does not exist.");
        var field = FindField(parent.GetType(), name)
            ?? throw new ArgumentException(
                $"Module '{path}' cannot be replaced: {parent.GetType().Name} keeps no field named '{name}'.");
        if (!field.FieldType.IsInstanceOfType(replacement))
            throw new ArgumentException(
                $"Module '{path}' expects a {field.FieldType.Name}; got {replacement.GetType().Name}.");
        field.SetValue(parent, replacement);
        children[name] = replacement;
        return old;
    }

    /// <summary>Every module under <paramref name="root"/> with its dotted path (the root itself excluded).</summary>
    public static IEnumerable<(string Path, nn.Module Module)> NamedModules(nn.Module root) =>
        root.named_modules().Where(m => m.name.Length > 0).Select(m => (m.name, m.module));

    private static OrderedDict<string, nn.Module> Children(nn.Module module) =>
        (OrderedDict<string, nn.Module>)SubmodulesField.GetValue(module)!;

    private static FieldInfo? FindField(Type? type, string name)
    {
        for (; type is not null && type != typeof(nn.Module); type = type.BaseType)
        {
            var f = type.GetField(name,
                BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly);
            if (f is not null) return f;
        }
        return null;
    }
}
