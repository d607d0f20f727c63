using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Row-at-a-time path (PredictionEngine, TransformerChain.GetRowToRowMapper): each output row scores its current
/// input row as a batch of one, once per input <see cref="DataViewRow.Position"/>, however many output columns are
/// read.
/// </summary>
internal sealed class PeftRowMapper : IRowToRowMapper
{
    private readonly PeftTransformerBase _owner;
    private readonly PeftBindings _bindings;

    public PeftRowMapper(PeftTransformerBase owner, PeftBindings bindings)
    {
        _owner = owner;
        _bindings = bindings;
    }

    public DataViewSchema InputSchema => _bindings.InputSchema;

    public DataViewSchema OutputSchema => _bindings.OutputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        ArgumentNullException.ThrowIfNull(dependingColumns);
        return _bindings.Resolve(dependingColumns, out _, out _);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(activeColumns);
        if (input.Schema != InputSchema)
            throw new ArgumentException("The row's schema is not the schema this mapper was created for.",
                nameof(input));
        _bindings.Resolve(activeColumns, out var passThrough, out var outputs);
        return new PeftMappedRow(_owner, _bindings, input, passThrough, outputs);
    }
}

internal sealed class PeftMappedRow : DataViewRow
{
    private readonly PeftTransformerBase _owner;
    private readonly PeftBindings _bindings;
    private readonly DataViewRow _input;
    private readonly bool[] _activePassThrough;
    private readonly bool[] _activeOutputs;
    private readonly ColumnBuffer[] _outputBuffers;
    private readonly ColumnBuffer[] _scored;
    private readonly PeftBatch? _batch;
    private readonly Func<int> _slotZero = static () => 0;
    private long _scoredPosition = long.MinValue;

    public PeftMappedRow(PeftTransformerBase owner, PeftBindings bindings, DataViewRow input, bool[] activePassThrough,
        bool[] activeOutputs)
    {
        _owner = owner;
        _bindings = bindings;
        _input = input;
        _activePassThrough = activePassThrough;
        _activeOutputs = activeOutputs;
        _scored = [];
        _outputBuffers = [];
        if (!activeOutputs.Any(a => a))
            return;
        _scored = bindings.InputColumns.Select(c => ColumnBuffer.ForInput(input, input.Schema[c.Index], 1)).ToArray();
        _outputBuffers = bindings.Outputs.Select(o => ColumnBuffer.ForOutput(o.Type, 1)).ToArray();
        _batch = new PeftBatch(_scored, bindings.InputNames, _outputBuffers, bindings.OutputNames, activeOutputs)
        {
            Count = 1,
        };
    }

    public override DataViewSchema Schema => _bindings.OutputSchema;

    public override long Position => _input.Position;

    public override long Batch => _input.Batch;

    public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

    public override bool IsColumnActive(DataViewSchema.Column column)
    {
        if (column.Index < 0 || column.Index >= Schema.Count || Schema[column.Index].Name != column.Name)
            throw new ArgumentException(
                $"Column '{column.Name}' (index {column.Index}) does not belong to this row's schema.", nameof(column));
        return column.Index < _bindings.PassThroughCount
            ? _activePassThrough[column.Index]
            : _activeOutputs[column.Index - _bindings.PassThroughCount];
    }

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (!IsColumnActive(column))
            throw new InvalidOperationException($"Column '{column.Name}' was not requested when this row was created.");
        if (column.Type.RawType != typeof(TValue))
            throw new InvalidOperationException(
                $"Column '{column.Name}' is of type {column.Type}, whose values are {column.Type.RawType}, " +
                $"not {typeof(TValue)}.");
        if (column.Index < _bindings.PassThroughCount)
            return _input.GetGetter<TValue>(_input.Schema[column.Index]);

        var inner = (ValueGetter<TValue>)_outputBuffers[column.Index - _bindings.PassThroughCount]
            .MakeGetter(_slotZero);
        return (ref TValue value) =>
        {
            EnsureScored();
            inner(ref value);
        };
    }

    private void EnsureScored()
    {
        long position = _input.Position;
        if (position == _scoredPosition)
            return;
        foreach (var buffer in _scored)
            buffer.Capture(0);
        _owner.ScoreBatchCore(_batch!);
        _scoredPosition = position;
    }
}
