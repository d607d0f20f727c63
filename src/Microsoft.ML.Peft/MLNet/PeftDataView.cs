using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// What <see cref="PeftTransformerBase.Transform"/> returns: the input plus the transformer's output columns, computed
/// in batches. ML.NET's own row-to-row transforms compute outputs row by row from getters over the current input row;
/// a neural network wants many rows per forward pass, so this view's cursor reads up to
/// <see cref="PeftTransformerBase.BatchSize"/> input rows ahead, scores them in one call and then serves them one by
/// one. Passed-through input columns are captured into the same batch, because the input cursor has moved on by then.
/// </summary>
internal sealed class PeftDataView : IDataView
{
    private readonly PeftTransformerBase _owner;
    private readonly IDataView _source;
    private readonly PeftBindings _bindings;

    public PeftDataView(PeftTransformerBase owner, IDataView source, PeftBindings bindings)
    {
        _owner = owner;
        _source = source;
        _bindings = bindings;
    }

    public bool CanShuffle => _source.CanShuffle;

    public DataViewSchema Schema => _bindings.OutputSchema;

    public long? GetRowCount() => _source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var inputColumns = _bindings.Resolve(columnsNeeded, out var passThrough, out var outputs);
        var input = _source.GetRowCursor(inputColumns, rand);
        return new PeftBatchingCursor(_owner, _bindings, input, passThrough, outputs, _owner.BatchSize);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n,
        Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var inputColumns = _bindings.Resolve(columnsNeeded, out var passThrough, out var outputs);
        // Several cursors call the scoring hook concurrently; only when the transformer says that is safe.
        if (n <= 1 || !_owner.CanScoreConcurrentlyCore)
        {
            var input = _source.GetRowCursor(inputColumns, rand);
            return [new PeftBatchingCursor(_owner, _bindings, input, passThrough, outputs, _owner.BatchSize)];
        }

        var inputs = _source.GetRowCursorSet(inputColumns, n, rand);
        var result = new DataViewRowCursor[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
            result[i] = new PeftBatchingCursor(_owner, _bindings, inputs[i], (bool[])passThrough.Clone(),
                (bool[])outputs.Clone(), _owner.BatchSize);
        return result;
    }
}

/// <summary>
/// Reads a batch of input rows, scores it with one hook call, then serves its rows. Owns every buffer it uses, so
/// cursors of a cursor set never share state. When no output column is requested it simply forwards the input.
/// </summary>
internal sealed class PeftBatchingCursor : DataViewRowCursor
{
    private readonly PeftTransformerBase _owner;
    private readonly PeftBindings _bindings;
    private readonly DataViewRowCursor _input;
    private readonly bool[] _activePassThrough;
    private readonly bool[] _activeOutputs;
    private readonly bool _forward;

    // Batched mode only.
    private readonly ColumnBuffer?[] _inputBuffers;   // by input-schema index; passed-through and scored columns
    private readonly ColumnBuffer[] _outputBuffers;   // by output index
    private readonly PeftBatch? _batch;
    private readonly ValueGetter<DataViewRowId>? _inputIdGetter;
    private readonly DataViewRowId[] _ids;
    private readonly long[] _batchIds;
    private readonly Func<int> _currentSlot;
    private int _count;
    private int _slot;

    private long _position = -1;
    private bool _done;

    public PeftBatchingCursor(PeftTransformerBase owner, PeftBindings bindings, DataViewRowCursor input,
        bool[] activePassThrough, bool[] activeOutputs, int batchSize)
    {
        _owner = owner;
        _bindings = bindings;
        _input = input;
        _activePassThrough = activePassThrough;
        _activeOutputs = activeOutputs;
        _forward = !activeOutputs.Any(a => a);
        _currentSlot = () => _slot;
        _inputBuffers = new ColumnBuffer?[bindings.PassThroughCount];
        _outputBuffers = [];
        _ids = [];
        _batchIds = [];
        if (_forward)
            return;

        for (int i = 0; i < activePassThrough.Length; i++)
        {
            if (activePassThrough[i])
                _inputBuffers[i] = ColumnBuffer.ForInput(input, input.Schema[i], batchSize);
        }
        var scored = new ColumnBuffer[bindings.InputColumns.Length];
        for (int i = 0; i < scored.Length; i++)
        {
            int index = bindings.InputColumns[i].Index;
            scored[i] = _inputBuffers[index] ??= ColumnBuffer.ForInput(input, input.Schema[index], batchSize);
        }
        _outputBuffers = bindings.Outputs.Select(o => ColumnBuffer.ForOutput(o.Type, batchSize)).ToArray();
        _batch = new PeftBatch(scored, bindings.InputNames, _outputBuffers, bindings.OutputNames, activeOutputs);
        _inputIdGetter = input.GetIdGetter();
        _ids = new DataViewRowId[batchSize];
        _batchIds = new long[batchSize];
    }

    public override DataViewSchema Schema => _bindings.OutputSchema;

    public override long Position => _position;

    public override long Batch => _forward ? _input.Batch : _batchIds[_slot];

    public override bool MoveNext()
    {
        if (_done)
            return false;
        if (_forward)
        {
            if (_input.MoveNext())
            {
                _position++;
                return true;
            }
            _done = true;
            return false;
        }

        if (_slot + 1 < _count)
        {
            _slot++;
            _position++;
            return true;
        }

        _count = 0;
        _slot = 0;
        int capacity = _ids.Length;
        while (_count < capacity && _input.MoveNext())
        {
            foreach (var buffer in _inputBuffers)
                buffer?.Capture(_count);
            _inputIdGetter!(ref _ids[_count]);
            _batchIds[_count] = _input.Batch;
            _count++;
        }
        if (_count == 0)
        {
            _done = true;
            return false;
        }

        _batch!.Count = _count;
        _owner.ScoreBatchCore(_batch);
        _position++;
        return true;
    }

    public override ValueGetter<DataViewRowId> GetIdGetter()
    {
        if (_forward)
            return _input.GetIdGetter();
        return (ref DataViewRowId value) => value = _ids[_slot];
    }

    public override bool IsColumnActive(DataViewSchema.Column column)
    {
        CheckColumn(column);
        return column.Index < _bindings.PassThroughCount
            ? _activePassThrough[column.Index]
            : _activeOutputs[column.Index - _bindings.PassThroughCount];
    }

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (!IsColumnActive(column))
            throw new InvalidOperationException(
                $"Column '{column.Name}' was not requested when this cursor was created.");
        if (column.Type.RawType != typeof(TValue))
            throw new InvalidOperationException(
                $"Column '{column.Name}' is of type {column.Type}, whose values are {column.Type.RawType}, " +
                $"not {typeof(TValue)}.");

        if (column.Index < _bindings.PassThroughCount)
        {
            if (_forward)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            return (ValueGetter<TValue>)_inputBuffers[column.Index]!.MakeGetter(_currentSlot);
        }
        return (ValueGetter<TValue>)_outputBuffers[column.Index - _bindings.PassThroughCount].MakeGetter(_currentSlot);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _input.Dispose();
        base.Dispose(disposing);
    }

    private void CheckColumn(DataViewSchema.Column column)
    {
        if (column.Index < 0 || column.Index >= Schema.Count || Schema[column.Index].Name != column.Name)
            throw new ArgumentException(
                $"Column '{column.Name}' (index {column.Index}) does not belong to this cursor's schema.",
                nameof(column));
    }
}
