using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// The rows of <paramref name="source"/> whose index (in the order a single unshuffled cursor reads them) has
/// <c>mask[index] == keep</c>: one fold of the validation rows, or the rest of them. Cursors always read the source in
/// order, so a shuffle request is ignored and a cursor set is one cursor.
/// </summary>
internal sealed class RowMaskDataView(IDataView source, bool[] mask, bool keep) : IDataView
{
    public bool CanShuffle => false;

    public DataViewSchema Schema => source.Schema;

    public long? GetRowCount() => mask.LongCount(m => m == keep);

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        new Cursor(source.GetRowCursor(columnsNeeded), mask, keep);

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n,
        Random? rand = null) =>
        [GetRowCursor(columnsNeeded)];

    /// <summary>How many rows <paramref name="data"/> has, counted with a cursor when the view does not know.</summary>
    public static int CountRows(IDataView data)
    {
        if (data.GetRowCount() is { } known) return checked((int)known);
        int count = 0;
        using var cursor = data.GetRowCursor([]);
        while (cursor.MoveNext()) count++;
        return count;
    }

    private sealed class Cursor(DataViewRowCursor inner, bool[] mask, bool keep) : DataViewRowCursor
    {
        private long _index = -1, _position = -1;

        public override DataViewSchema Schema => inner.Schema;
        public override long Position => _position;
        public override long Batch => 0;
        public override bool IsColumnActive(DataViewSchema.Column column) => inner.IsColumnActive(column);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            inner.GetGetter<TValue>(column);
        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();

        public override bool MoveNext()
        {
            while (inner.MoveNext())
            {
                if (++_index >= mask.Length)
                    throw new InvalidOperationException(
                        $"The data has more rows than the {mask.Length} it had when the folds were drawn.");
                if (mask[_index] == keep)
                {
                    _position++;
                    return true;
                }
            }
            return false;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
