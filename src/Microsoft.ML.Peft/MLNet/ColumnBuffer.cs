using System.Reflection;
using Microsoft.ML.Data;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A fixed number of values ("slots") of one column. Input buffers capture the current value of a source row into a
/// slot; every buffer can hand out a getter that reads the slot a cursor is on. Vector values are deep-copied both in
/// and out, so neither the source's buffers nor ours are ever aliased by a consumer.
/// </summary>
internal abstract class ColumnBuffer
{
    public abstract int Capacity { get; }

    /// <summary>Reads the source row's current value into <paramref name="slot"/>. Only for input buffers.</summary>
    public abstract void Capture(int slot);

    /// <summary>A <c>ValueGetter&lt;T&gt;</c> (T = raw type) that returns the value in slot <c>slot()</c>.</summary>
    public abstract Delegate MakeGetter(Func<int> slot);

    /// <summary>A buffer for values of <paramref name="type"/> filled by the caller (output columns).</summary>
    public static ColumnBuffer ForOutput(DataViewType type, int capacity) => Create(type, capacity, null, null);

    /// <summary>A buffer that captures <paramref name="column"/> of <paramref name="source"/>.</summary>
    public static ColumnBuffer ForInput(DataViewRow source, DataViewSchema.Column column, int capacity)
        => Create(column.Type, capacity, source, column);

    private static ColumnBuffer Create(DataViewType type, int capacity, DataViewRow? source,
        DataViewSchema.Column? column)
    {
        Type raw = type.RawType;
        MethodInfo factory;
        if (raw.IsGenericType && raw.GetGenericTypeDefinition() == typeof(VBuffer<>))
            factory = CreateVectorMethod.MakeGenericMethod(raw.GetGenericArguments()[0]);
        else
            factory = CreateScalarMethod.MakeGenericMethod(raw);
        return (ColumnBuffer)factory.Invoke(null, [capacity, source, column])!;
    }

    private static readonly MethodInfo CreateScalarMethod =
        typeof(ColumnBuffer).GetMethod(nameof(CreateScalar), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo CreateVectorMethod =
        typeof(ColumnBuffer).GetMethod(nameof(CreateVector), BindingFlags.NonPublic | BindingFlags.Static)!;

    private static ColumnBuffer CreateScalar<T>(int capacity, DataViewRow? source, DataViewSchema.Column? column)
        => new ScalarColumnBuffer<T>(capacity, source is null ? null : source.GetGetter<T>(column!.Value));

    private static ColumnBuffer CreateVector<T>(int capacity, DataViewRow? source, DataViewSchema.Column? column)
        => new VectorColumnBuffer<T>(capacity, source is null ? null : source.GetGetter<VBuffer<T>>(column!.Value));
}

/// <summary>Slots of one raw type.</summary>
internal abstract class ColumnBuffer<T> : ColumnBuffer
{
    protected ColumnBuffer(int capacity) => Values = new T[capacity];

    public T[] Values { get; }

    public override int Capacity => Values.Length;
}

/// <summary>
/// Scalars, keys and text: values are copied by assignment (ReadOnlyMemory&lt;char&gt; is immutable).
/// </summary>
internal sealed class ScalarColumnBuffer<T>(int capacity, ValueGetter<T>? source) : ColumnBuffer<T>(capacity)
{
    public override void Capture(int slot)
    {
        if (source is null)
            throw new InvalidOperationException("This buffer holds output values; it has no source to capture from.");
        source(ref Values[slot]);
    }

    public override Delegate MakeGetter(Func<int> slot)
    {
        ValueGetter<T> getter = (ref T value) => value = Values[slot()];
        return getter;
    }
}

/// <summary>Vectors: deep copies in and out.</summary>
internal sealed class VectorColumnBuffer<T>(int capacity, ValueGetter<VBuffer<T>>? source)
    : ColumnBuffer<VBuffer<T>>(capacity)
{
    private VBuffer<T> _scratch;

    public override void Capture(int slot)
    {
        if (source is null)
            throw new InvalidOperationException("This buffer holds output values; it has no source to capture from.");
        // Some sources hand out their own arrays; copy so that the slot owns its memory.
        source(ref _scratch);
        _scratch.CopyTo(ref Values[slot]);
    }

    public override Delegate MakeGetter(Func<int> slot)
    {
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> value) => Values[slot()].CopyTo(ref value);
        return getter;
    }
}
