using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Testing;

/// <summary>
/// Prints columns of a data view as text, one row per line, floats in round-trip form ("R"), so that two processes'
/// outputs can be compared for exact equality. Shared by ModelLoadProbe and the tests (linked source).
/// </summary>
internal static class RowFormatter
{
    public static List<string> Format(IDataView view, IReadOnlyList<string> columnNames)
    {
        var columns = columnNames
            .Select(n => view.Schema.GetColumnOrNull(n)
                ?? throw new ArgumentException($"No column '{n}' in the data view."))
            .ToArray();
        var lines = new List<string>();
        using var cursor = view.GetRowCursor(columns);
        var formatters = columns.Select(c => MakeFormatter(cursor, c)).ToArray();
        while (cursor.MoveNext())
            lines.Add(string.Join('\t', formatters.Select(f => f())));
        return lines;
    }

    private static Func<string> MakeFormatter(DataViewRow row, DataViewSchema.Column column)
    {
        switch (column.Type)
        {
            case VectorDataViewType vector when vector.ItemType.RawType == typeof(float):
            {
                var getter = row.GetGetter<VBuffer<float>>(column);
                VBuffer<float> value = default;
                return () =>
                {
                    getter(ref value);
                    return string.Join(' ',
                        value.DenseValues().Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
                };
            }
            case KeyDataViewType when column.Type.RawType == typeof(uint):
            {
                var getter = row.GetGetter<uint>(column);
                uint value = 0;
                return () =>
                {
                    getter(ref value);
                    return value.ToString(CultureInfo.InvariantCulture);
                };
            }
            case TextDataViewType:
            {
                var getter = row.GetGetter<ReadOnlyMemory<char>>(column);
                ReadOnlyMemory<char> value = default;
                return () =>
                {
                    getter(ref value);
                    return value.ToString();
                };
            }
            case NumberDataViewType when column.Type.RawType == typeof(float):
            {
                var getter = row.GetGetter<float>(column);
                float value = 0;
                return () =>
                {
                    getter(ref value);
                    return value.ToString("R", CultureInfo.InvariantCulture);
                };
            }
            default:
                throw new NotSupportedException($"Column '{column.Name}' has type {column.Type}, which this " +
                    "formatter does not print.");
        }
    }
}
