using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A batch of consecutive rows handed to <see cref="PeftTransformerBase"/>'s scoring hook: the values of the
/// transformer's input columns for <see cref="Count"/> rows, and one writable slot per row and output column.
/// </summary>
/// <remarks>
/// Each cursor owns its batch (and the buffers behind it), so batches of parallel cursors never share memory.
/// The spans are valid only during the hook call; values a hook keeps must be copied. Output vectors written into
/// the output spans are deep-copied when a consumer reads them, so a hook may reuse their arrays from batch to batch.
/// </remarks>
internal sealed class PeftBatch
{
    private readonly ColumnBuffer[] _inputs;
    private readonly ColumnBuffer[] _outputs;
    private readonly bool[] _activeOutputs;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    internal PeftBatch(ColumnBuffer[] inputs, string[] inputNames, ColumnBuffer[] outputs, string[] outputNames,
        bool[] activeOutputs)
    {
        _inputs = inputs;
        _inputNames = inputNames;
        _outputs = outputs;
        _outputNames = outputNames;
        _activeOutputs = activeOutputs;
        Capacity = outputs.Length > 0 ? outputs[0].Capacity : inputs.Length > 0 ? inputs[0].Capacity : 0;
    }

    /// <summary>Number of rows in this batch (1 to <see cref="Capacity"/>).</summary>
    public int Count { get; internal set; }

    /// <summary>
    /// Most rows a batch of this cursor can hold (the transformer's batch size, or 1 for single rows).
    /// </summary>
    public int Capacity { get; }

    /// <summary>Number of input columns (as passed to the transformer's constructor, in that order).</summary>
    public int InputCount => _inputs.Length;

    /// <summary>Number of output columns (as returned by the output-column hook, in that order).</summary>
    public int OutputCount => _outputs.Length;

    /// <summary>
    /// Values of input column <paramref name="inputIndex"/> for the rows of this batch. <typeparamref name="T"/> is the
    /// column's raw type: <see cref="ReadOnlyMemory{T}"/> of char for text, <see cref="VBuffer{T}"/> for vectors.
    /// </summary>
    /// <exception cref="InvalidOperationException"><typeparamref name="T"/> is not the column's raw type.</exception>
    public ReadOnlySpan<T> GetInput<T>(int inputIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(inputIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(inputIndex, _inputs.Length);
        if (_inputs[inputIndex] is not ColumnBuffer<T> buffer)
            throw new InvalidOperationException(
                $"Input column '{_inputNames[inputIndex]}' does not hold values of type {typeof(T)}.");
        return buffer.Values.AsSpan(0, Count);
    }

    /// <summary>
    /// Slots to fill for output column <paramref name="outputIndex"/>, one per row of this batch.
    /// <typeparamref name="T"/> is the column's raw type (for a key column, e.g. <see cref="uint"/>; for a float
    /// vector, <see cref="VBuffer{T}"/> of float). Slots keep what the previous batch of the same cursor left in them.
    /// </summary>
    /// <exception cref="InvalidOperationException"><typeparamref name="T"/> is not the column's raw type.</exception>
    public Span<T> GetOutput<T>(int outputIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(outputIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(outputIndex, _outputs.Length);
        if (_outputs[outputIndex] is not ColumnBuffer<T> buffer)
            throw new InvalidOperationException(
                $"Output column '{_outputNames[outputIndex]}' does not hold values of type {typeof(T)}.");
        return buffer.Values.AsSpan(0, Count);
    }

    /// <summary>
    /// Whether a consumer reads output column <paramref name="outputIndex"/>; a hook may skip filling inactive outputs.
    /// </summary>
    public bool IsOutputActive(int outputIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(outputIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(outputIndex, _outputs.Length);
        return _activeOutputs[outputIndex];
    }
}
