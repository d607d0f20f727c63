using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Builds the column annotations ML.NET's own scorers attach, so that evaluators, <c>MapKeyToValue</c> and
/// PredictionEngine treat a PEFT transformer's outputs like any trainer's.
/// </summary>
public static class PeftAnnotations
{
    /// <summary>Annotation kind: names of a key's values.</summary>
    public const string KeyValuesKind = "KeyValues";

    /// <summary>Annotation kind: names of a vector's slots.</summary>
    public const string SlotNamesKind = "SlotNames";

    /// <summary>Annotation kind: which task a score column belongs to.</summary>
    public const string ScoreColumnKindKind = "ScoreColumnKind";

    /// <summary>Annotation kind: what a score-set column holds (Score, PredictedLabel, Probability).</summary>
    public const string ScoreValueKindKind = "ScoreValueKind";

    /// <summary>Value of <see cref="ScoreColumnKindKind"/> for multiclass classification.</summary>
    public const string MulticlassClassification = "MulticlassClassification";

    /// <summary>
    /// The text values of key column <paramref name="keyColumn"/> (its KeyValues annotation), in key order (key 1
    /// first).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// The column is not a key, or has no text KeyValues of the key's size.
    /// </exception>
    public static string[] GetKeyValues(DataViewSchema.Column keyColumn)
    {
        if (keyColumn.Type is not KeyDataViewType key)
            throw new ArgumentOutOfRangeException(nameof(keyColumn),
                $"Column '{keyColumn.Name}' is of type {keyColumn.Type}, not a key type. " +
                "Map it with MapValueToKey first.");
        var annotation = keyColumn.Annotations.Schema.GetColumnOrNull(KeyValuesKind);
        if (annotation is not { } column || column.Type is not VectorDataViewType { ItemType: TextDataViewType } vector
            || vector.Size != (int)key.Count)
            throw new ArgumentOutOfRangeException(nameof(keyColumn),
                $"Key column '{keyColumn.Name}' has no text KeyValues annotation with {key.Count} values.");
        VBuffer<ReadOnlyMemory<char>> values = default;
        keyColumn.Annotations.GetValue(KeyValuesKind, ref values);
        return values.DenseValues().Select(v => v.ToString()).ToArray();
    }

    /// <summary>KeyValues for a key output column with one name per key value (key 1 first).</summary>
    public static DataViewSchema.Annotations KeyValues(IReadOnlyList<string> names)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddTextVector(builder, KeyValuesKind, names);
        return builder.ToAnnotations();
    }

    /// <summary>SlotNames for a vector output column with one name per slot.</summary>
    public static DataViewSchema.Annotations SlotNames(IReadOnlyList<string> names)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddTextVector(builder, SlotNamesKind, names);
        return builder.ToAnnotations();
    }

    /// <summary>
    /// Annotations of a multiclass Score column (a float vector, one slot per class): SlotNames = class names,
    /// ScoreColumnKind = MulticlassClassification, ScoreValueKind = Score.
    /// </summary>
    public static DataViewSchema.Annotations MulticlassScore(IReadOnlyList<string> classNames)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddTextVector(builder, SlotNamesKind, classNames);
        AddText(builder, ScoreColumnKindKind, MulticlassClassification);
        AddText(builder, ScoreValueKindKind, "Score");
        return builder.ToAnnotations();
    }

    /// <summary>
    /// Annotations of a multiclass PredictedLabel column (a key, one value per class): KeyValues = class names,
    /// ScoreColumnKind = MulticlassClassification, ScoreValueKind = PredictedLabel.
    /// </summary>
    public static DataViewSchema.Annotations MulticlassPredictedLabel(IReadOnlyList<string> classNames)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddTextVector(builder, KeyValuesKind, classNames);
        AddText(builder, ScoreColumnKindKind, MulticlassClassification);
        AddText(builder, ScoreValueKindKind, "PredictedLabel");
        return builder.ToAnnotations();
    }

    private static void AddTextVector(DataViewSchema.Annotations.Builder builder, string kind,
        IReadOnlyList<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        if (names.Count == 0)
            throw new ArgumentException("At least one name is needed.", nameof(names));
        var values = names
            .Select(n => (n ?? throw new ArgumentException("Names cannot be null.", nameof(names))).AsMemory())
            .ToArray();
        ValueGetter<VBuffer<ReadOnlyMemory<char>>> getter =
            (ref VBuffer<ReadOnlyMemory<char>> value) =>
                new VBuffer<ReadOnlyMemory<char>>(values.Length, values).CopyTo(ref value);
        builder.Add(kind, new VectorDataViewType(TextDataViewType.Instance, values.Length), getter);
    }

    private static void AddText(DataViewSchema.Annotations.Builder builder, string kind, string value)
    {
        ValueGetter<ReadOnlyMemory<char>> getter = (ref ReadOnlyMemory<char> v) => v = value.AsMemory();
        builder.Add(kind, TextDataViewType.Instance, getter);
    }
}
