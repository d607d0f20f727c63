using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Describes one column that a <see cref="PeftTransformerBase"/> adds to its input: name, type and annotations
/// (for example SlotNames on a score vector, KeyValues on a predicted-label key).
/// </summary>
internal sealed class PeftOutputColumn
{
    /// <summary>Creates an output column description.</summary>
    /// <param name="name">Column name. A column of the same name in the input is hidden, as ML.NET does.</param>
    /// <param name="type">Column type; its raw type is what <see cref="PeftBatch.GetOutput{T}"/> hands out.</param>
    /// <param name="annotations">Optional annotations; <see cref="PeftAnnotations"/> builds the usual ones.</param>
    public PeftOutputColumn(string name, DataViewType type, DataViewSchema.Annotations? annotations = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(type);
        Name = name;
        Type = type;
        Annotations = annotations ?? DataViewSchema.Annotations.Empty;
    }

    /// <summary>Column name.</summary>
    public string Name { get; }

    /// <summary>Column type.</summary>
    public DataViewType Type { get; }

    /// <summary>Column annotations (never null).</summary>
    public DataViewSchema.Annotations Annotations { get; }
}
