using Microsoft.ML.Data;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>Raw rows read from an <see cref="IDataView"/>: texts and targets, before tokenization.</summary>
internal sealed class TrainingData
{
    public List<string?> First { get; } = [];
    public List<string?>? Second { get; init; }
    public List<float> Labels { get; } = [];
    public int SkippedMissingLabel { get; set; }

    /// <summary>Regression rows skipped because their label is +/-Infinity (NaN counts as missing).</summary>
    public int SkippedNonFiniteLabel { get; set; }

    /// <summary>Rows whose text held lone UTF-16 surrogates (the tokenizer replaces them with U+FFFD).</summary>
    public int RepairedTextRows { get; set; }

    /// <summary>All rows left out of training.</summary>
    public int SkippedRows => SkippedMissingLabel + SkippedNonFiniteLabel;

    public int Count => First.Count;

    /// <summary>
    /// Reads the text and label columns. Classification labels are keys (1-based; 0 means missing and the row is
    /// skipped); regression labels are floats (NaN and +/-Infinity are skipped).
    /// Rows with lone UTF-16 surrogates are counted; the tokenizer repairs them.
    /// </summary>
    public static TrainingData Read(IDataView data, string labelColumn, string textColumn, string? secondTextColumn,
        PeftTask task, Action checkAlive)
    {
        var schema = data.Schema;
        var label = schema[labelColumn];
        var text = schema[textColumn];
        var second = secondTextColumn is null ? (DataViewSchema.Column?)null : schema[secondTextColumn];
        var result = new TrainingData { Second = second is null ? null : [] };
        var cols = second is null ? new[] { label, text } : [label, text, second.Value];
        using var cursor = data.GetRowCursor(cols);
        var textGetter = cursor.GetGetter<ReadOnlyMemory<char>>(text);
        var secondGetter = second is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(second.Value);
        ValueGetter<float> labelGetter = task == PeftTask.Classification
            ? KeyLabelGetter(cursor, label)
            : FloatLabelGetter(cursor, label);
        ReadOnlyMemory<char> t = default, s = default;
        float y = 0;
        long row = 0;
        while (cursor.MoveNext())
        {
            if ((++row & 1023) == 0) checkAlive();
            labelGetter(ref y);
            if (float.IsNaN(y)) { result.SkippedMissingLabel++; continue; }
            // An infinite target cannot be standardised or learned; it would surface as an infinite loss instead.
            if (float.IsInfinity(y)) { result.SkippedNonFiniteLabel++; continue; }
            textGetter(ref t);
            // Counted here for the log; the tokenizer repairs every text it encodes, training and scoring alike.
            bool repaired = Utf16Repair.NeedsRepair(t.Span);
            result.First.Add(t.ToString());
            if (secondGetter is not null)
            {
                secondGetter(ref s);
                repaired |= Utf16Repair.NeedsRepair(s.Span);
                result.Second!.Add(s.ToString());
            }
            if (repaired) result.RepairedTextRows++;
            result.Labels.Add(y);
        }
        return result;
    }

    private static ValueGetter<float> KeyLabelGetter(DataViewRowCursor cursor, DataViewSchema.Column label)
    {
        // ML.NET keys are 1-based with 0 as "missing"; class index = key - 1.
        switch (label.Type.RawType)
        {
            case var t when t == typeof(uint):
            {
                var g = cursor.GetGetter<uint>(label); uint k = 0;
                return (ref float v) => { g(ref k); v = k == 0 ? float.NaN : k - 1; };
            }
            case var t when t == typeof(ushort):
            {
                var g = cursor.GetGetter<ushort>(label); ushort k = 0;
                return (ref float v) => { g(ref k); v = k == 0 ? float.NaN : k - 1; };
            }
            case var t when t == typeof(byte):
            {
                var g = cursor.GetGetter<byte>(label); byte k = 0;
                return (ref float v) => { g(ref k); v = k == 0 ? float.NaN : k - 1; };
            }
            default:
            {
                var g = cursor.GetGetter<ulong>(label); ulong k = 0;
                return (ref float v) => { g(ref k); v = k == 0 ? float.NaN : k - 1; };
            }
        }
    }

    private static ValueGetter<float> FloatLabelGetter(DataViewRowCursor cursor, DataViewSchema.Column label)
    {
        if (label.Type.RawType == typeof(double))
        {
            var g = cursor.GetGetter<double>(label); double d = 0;
            return (ref float v) => { g(ref d); v = (float)d; };
        }
        return cursor.GetGetter<float>(label);
    }
}
