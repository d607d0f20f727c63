using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Methods.IA3;

/// <summary>
/// (IA)³ in an exported graph: every vector folds into its layer's plain weights, as <see cref="IA3Linear.Merge"/>
/// folds it for scoring, so the graph is the base encoder's with other numbers and no extra nodes.
/// </summary>
/// <remarks>
/// A vector's shape says where <see cref="IA3Linear"/> applies it, so the export needs no model to resolve the
/// targets: [out, 1] scales the layer's output (weight rows and bias), [1, in] its input (weight columns only: the
/// bias is added after the input is scaled).
/// </remarks>
internal sealed class IA3OnnxExport : OnnxMethodExport
{
    private const string Suffix = ".ia3_l";

    /// <inheritdoc/>
    public override void Merge(ExportWeights weights)
    {
        // ToList: Take marks names while the loop reads them.
        foreach (var name in weights.TrainedNames.Where(n => n.EndsWith(Suffix, StringComparison.Ordinal)).ToList())
        {
            string module = name[..^Suffix.Length];
            var l = weights.Take(name);
            var w = weights.Plain(module + ".weight").Clone();
            bool scalesInput = l.Shape is [1, var n] && n == w.Columns;
            if (!scalesInput && !(l.Shape is [var m, 1] && m == w.Rows))
                throw new InvalidOperationException(
                    $"(IA)³ vector '{name}' has shape {l.ShapeText}, which fits neither the rows nor the columns of " +
                    $"its layer's weight {w.ShapeText}.");
            for (int i = 0; i < w.Rows; i++)
                for (int j = 0; j < w.Columns; j++)
                    w.Data[i * w.Columns + j] *= l.Data[scalesInput ? j : i];
            weights.SetPlain(module + ".weight", w);
            if (scalesInput || !weights.HasPlain(module + ".bias")) continue;
            var b = weights.Plain(module + ".bias").Clone();
            for (int i = 0; i < b.Data.Length; i++) b.Data[i] *= l.Data[i];
            weights.SetPlain(module + ".bias", b);
        }
    }
}
