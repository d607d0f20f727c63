namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A <see cref="PeftTransformerBase"/> bound to one input schema: where its input columns are, and the output schema
/// (all input columns, then the added ones; an added column hides an input column of the same name).
/// </summary>
internal sealed class PeftBindings
{
    public PeftBindings(DataViewSchema inputSchema, DataViewSchema.Column[] inputColumns,
        IReadOnlyList<PeftOutputColumn> outputs)
    {
        InputSchema = inputSchema;
        InputColumns = inputColumns;
        Outputs = outputs;

        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        foreach (var output in outputs)
            builder.AddColumn(output.Name, output.Type, output.Annotations);
        OutputSchema = builder.ToSchema();
        InputNames = inputColumns.Select(c => c.Name).ToArray();
        OutputNames = outputs.Select(c => c.Name).ToArray();
    }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    /// <summary>The transformer's input columns, resolved in <see cref="InputSchema"/>.</summary>
    public DataViewSchema.Column[] InputColumns { get; }

    public string[] InputNames { get; }

    public IReadOnlyList<PeftOutputColumn> Outputs { get; }

    public string[] OutputNames { get; }

    /// <summary>
    /// Number of input-schema columns; output-schema index <c>i &lt; this</c> is input column <c>i</c>.
    /// </summary>
    public int PassThroughCount => InputSchema.Count;

    /// <summary>
    /// Splits requested output-schema columns into active input columns (by input index) and active outputs,
    /// and returns the input columns a cursor must read: the passed-through ones, plus the transformer's inputs
    /// when any output is requested.
    /// </summary>
    public DataViewSchema.Column[] Resolve(IEnumerable<DataViewSchema.Column> requested, out bool[] activePassThrough,
        out bool[] activeOutputs)
    {
        activePassThrough = new bool[PassThroughCount];
        activeOutputs = new bool[Outputs.Count];
        foreach (var column in requested)
        {
            if (column.Index < 0 || column.Index >= OutputSchema.Count
                || OutputSchema[column.Index].Name != column.Name)
                throw new ArgumentException(
                    $"Column '{column.Name}' (index {column.Index}) does not belong to this schema.",
                    nameof(requested));
            if (column.Index < PassThroughCount)
                activePassThrough[column.Index] = true;
            else
                activeOutputs[column.Index - PassThroughCount] = true;
        }

        var needed = (bool[])activePassThrough.Clone();
        if (activeOutputs.Any(a => a))
        {
            foreach (var input in InputColumns)
                needed[input.Index] = true;
        }
        var result = new List<DataViewSchema.Column>();
        for (int i = 0; i < needed.Length; i++)
        {
            if (needed[i])
                result.Add(InputSchema[i]);
        }
        return result.ToArray();
    }
}
