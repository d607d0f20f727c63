using System.Globalization;
using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A label's key values with their original item type (text, float, double, bool, integers), so a saved model gives
/// <c>PredictedLabel</c> the same KeyValues the training label had and <c>MapKeyToValue</c> returns the original type.
/// Stored as invariant-culture strings plus a type name.
/// </summary>
public sealed record KeyValueList
{
    /// <summary>
    /// The key values' item type: <c>Text</c>, <c>Single</c>, <c>Double</c>, <c>Boolean</c>, <c>Int32</c>,
    /// <c>Int64</c>, <c>UInt32</c>, <c>UInt64</c>.
    /// </summary>
    public string ItemType { get; init; } = "Text";

    /// <summary>The values in key order (key 1 first), written with the invariant culture.</summary>
    public string[] Values { get; init; } = [];

    /// <summary>Number of classes.</summary>
    public int Count => Values.Length;

    /// <summary>
    /// Reads the KeyValues annotation of a key column; a key without KeyValues gets "1", "2", ... as text.
    /// </summary>
    public static KeyValueList FromKeyColumn(DataViewSchema.Column column)
    {
        if (column.Type is not KeyDataViewType key)
            throw new ArgumentOutOfRangeException(nameof(column),
                $"Column '{column.Name}' is {column.Type}, not a key type. " +
                $"Add MapValueToKey(\"{column.Name}\") first.");
        int count = checked((int)key.Count);
        var annotation = column.Annotations.Schema.GetColumnOrNull(AnnotationUtils.Kinds.KeyValues);
        if (annotation is not { Type: VectorDataViewType { ItemType: PrimitiveDataViewType item } vector }
            || vector.Size != count)
            return new KeyValueList
            {
                ItemType = "Text",
                Values = Enumerable.Range(1, count).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray(),
            };
        string[] values = item.RawType switch
        {
            var t when t == typeof(ReadOnlyMemory<char>) => Read<ReadOnlyMemory<char>>(column, v => v.ToString()),
            var t when t == typeof(float) => Read<float>(column, v => v.ToString("R", CultureInfo.InvariantCulture)),
            var t when t == typeof(double) => Read<double>(column, v => v.ToString("R", CultureInfo.InvariantCulture)),
            var t when t == typeof(bool) => Read<bool>(column, v => v ? "true" : "false"),
            var t when t == typeof(int) => Read<int>(column, v => v.ToString(CultureInfo.InvariantCulture)),
            var t when t == typeof(long) => Read<long>(column, v => v.ToString(CultureInfo.InvariantCulture)),
            var t when t == typeof(uint) => Read<uint>(column, v => v.ToString(CultureInfo.InvariantCulture)),
            var t when t == typeof(ulong) => Read<ulong>(column, v => v.ToString(CultureInfo.InvariantCulture)),
            _ => throw new ArgumentOutOfRangeException(nameof(column),
                $"Key column '{column.Name}' has KeyValues of type {item}, which this stage cannot carry."),
        };
        return new KeyValueList
        {
            ItemType = item.RawType == typeof(ReadOnlyMemory<char>) ? "Text" : item.RawType.Name,
            Values = values,
        };
    }

    private static string[] Read<T>(DataViewSchema.Column column, Func<T, string> format)
    {
        VBuffer<T> buffer = default;
        column.Annotations.GetValue(AnnotationUtils.Kinds.KeyValues, ref buffer);
        return buffer.DenseValues().Select(format).ToArray();
    }

    /// <summary>Adds a KeyValues annotation of the original item type to <paramref name="builder"/>.</summary>
    internal void AddKeyValues(DataViewSchema.Annotations.Builder builder)
    {
        switch (ItemType)
        {
            case "Text": Add(builder, TextDataViewType.Instance, Values.Select(v => v.AsMemory()).ToArray()); break;
            case "Single":
                Add(builder, NumberDataViewType.Single,
                    Values.Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            case "Double":
                Add(builder, NumberDataViewType.Double,
                    Values.Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            case "Boolean": Add(builder, BooleanDataViewType.Instance, Values.Select(ParseBoolean).ToArray()); break;
            case "Int32":
                Add(builder, NumberDataViewType.Int32,
                    Values.Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            case "Int64":
                Add(builder, NumberDataViewType.Int64,
                    Values.Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            case "UInt32":
                Add(builder, NumberDataViewType.UInt32,
                    Values.Select(v => uint.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            case "UInt64":
                Add(builder, NumberDataViewType.UInt64,
                    Values.Select(v => ulong.Parse(v, CultureInfo.InvariantCulture)).ToArray());
                break;
            default: throw new FormatException($"Unknown key value type '{ItemType}' in the saved model.");
        }
    }

    /// <summary>Whether every value parses as <see cref="ItemType"/> (the same parsing the annotation uses).</summary>
    internal bool ValuesParse()
    {
        try
        {
            AddKeyValues(new DataViewSchema.Annotations.Builder());
            return true;
        }
        catch (Exception ex) when (ex is FormatException or OverflowException)
        {
            return false;
        }
    }

    private static bool ParseBoolean(string v) =>
        v switch { "true" => true, "false" => false, _ => throw new FormatException($"'{v}' is not a saved Boolean.") };

    private static void Add<T>(DataViewSchema.Annotations.Builder builder, PrimitiveDataViewType type, T[] values)
    {
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> dst) => new VBuffer<T>(values.Length, values).CopyTo(ref dst);
        builder.Add(AnnotationUtils.Kinds.KeyValues, new VectorDataViewType(type, values.Length), getter);
    }
}
