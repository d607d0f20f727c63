using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// A pass-through view whose cursors throw <see cref="OperationCanceledException"/> once the token is cancelled, so a
/// trial's validation scoring stops with the sweep's budget instead of finishing a large validation set first. The
/// scoring stage reads its input a batch ahead, so the check fires within one scoring batch.
/// </summary>
internal sealed class CancellableDataView(IDataView source, CancellationToken cancel) : IDataView
{
    public bool CanShuffle => source.CanShuffle;

    public DataViewSchema Schema => source.Schema;

    public long? GetRowCount() => source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        new Cursor(source.GetRowCursor(columnsNeeded, rand), cancel);

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n,
        Random? rand = null) =>
        source.GetRowCursorSet(columnsNeeded, n, rand).Select(c => (DataViewRowCursor)new Cursor(c, cancel)).ToArray();

    private sealed class Cursor(DataViewRowCursor inner, CancellationToken cancel) : DataViewRowCursor
    {
        public override DataViewSchema Schema => inner.Schema;
        public override long Position => inner.Position;
        public override long Batch => inner.Batch;
        public override bool IsColumnActive(DataViewSchema.Column column) => inner.IsColumnActive(column);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            inner.GetGetter<TValue>(column);
        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();

        public override bool MoveNext()
        {
            cancel.ThrowIfCancellationRequested();
            return inner.MoveNext();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
