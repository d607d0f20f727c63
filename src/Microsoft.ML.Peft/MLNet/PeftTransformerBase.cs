using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Base of the PEFT transformers: an ML.NET <see cref="ITransformer"/> that reads some input columns, adds output
/// columns computed by a neural network in batches, and saves into / loads from ML.NET model files
/// (<c>mlContext.Model.Save</c> / <c>Load</c>) with its weights as named binary streams inside the .zip.
/// </summary>
/// <remarks>
/// <para>A subclass provides:</para>
/// <list type="bullet">
/// <item><see cref="ModelSignature"/>: loader name, 8-character model signature and format version;</item>
/// <item><see cref="GetOutputColumns"/>: the columns it adds, with annotations (see
/// <see cref="PeftAnnotations"/>);</item>
/// <item><see cref="CheckInputColumn"/> (optional): type checks on its input columns;</item>
/// <item><see cref="ScoreBatch"/>: computes the outputs of a batch of rows (one forward pass);</item>
/// <item><see cref="SaveContents"/>: writes options (JSON) and binary streams via <see cref="PeftModelWriter"/>;</item>
/// <item>a loader, registered with ML.NET, that reads them back through <see cref="ReadModel"/>:
/// <code>
/// [assembly: LoadableClass(typeof(MyTransformer), null, typeof(SignatureLoadModel), "My transformer",
/// MyTransformer.LoaderSignature)] ...
/// private static MyTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
/// {
///     var model = ReadModel(env, ctx, Signature);
///     var options = model.ReadOptions&lt;MyOptions&gt;();
///     model.ReadStream("Weights.bin", reader =&gt; ...);
///     return new MyTransformer(env, model.InputColumnNames, model.BatchSize, options, ...);
/// }
/// </code></item>
/// </list>
/// <para>
/// <see cref="Transform"/> returns a view whose cursors pull <see cref="BatchSize"/> input rows at a time and make one
/// <see cref="ScoreBatch"/> call per batch; <see cref="GetRowToRowMapper"/> (PredictionEngine) scores one row per call.
/// Cursors of a cursor set run <see cref="ScoreBatch"/> concurrently only when <see cref="CanScoreConcurrently"/> is
/// true; each cursor owns its buffers either way.
/// </para>
/// <para>
/// Only one loader attribute is needed (ML.NET's row-to-row transformers also register a row-mapper loader because
/// their data views are saved as <c>RowToRowMapperTransform</c>s; the view returned here is never saved by itself).
/// Subclasses use ML.NET internals (<c>LoadableClassAttribute</c>, <c>ModelLoadContext</c>), so they are compiled with
/// eng/MLNetInternals.targets; the members they implement are <c>private protected</c>, i.e. for this assembly
/// (and its test assembly) only.
/// </para>
/// </remarks>
public abstract class PeftTransformerBase : ITransformer
{
    /// <summary>Rows per <see cref="ScoreBatch"/> call when a subclass does not choose.</summary>
    public const int DefaultBatchSize = 32;

    private const int MaxBatchSize = PeftStageHeader.MaxBatchSize;

    /// <summary>Initializes the common state.</summary>
    /// <param name="env">The ML.NET environment (an <see cref="MLContext"/>).</param>
    /// <param name="registrationName">Name of this component's host (used in log messages).</param>
    /// <param name="inputColumnNames">
    /// Input columns, in the order <see cref="PeftBatch.GetInput{T}"/> indexes them.
    /// </param>
    /// <param name="batchSize">Rows per <see cref="ScoreBatch"/> call when cursoring; 1 to 65536.</param>
    private protected PeftTransformerBase(IHostEnvironment env, string registrationName,
        IEnumerable<string> inputColumnNames, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentException.ThrowIfNullOrWhiteSpace(registrationName);
        ArgumentNullException.ThrowIfNull(inputColumnNames);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(batchSize, MaxBatchSize);
        var names = inputColumnNames.ToArray();
        if (names.Length == 0)
            throw new ArgumentException("At least one input column is needed.", nameof(inputColumnNames));
        foreach (var name in names)
            ArgumentException.ThrowIfNullOrWhiteSpace(name, nameof(inputColumnNames));
        Host = env.Register(registrationName);
        InputColumnNames = names;
        BatchSize = batchSize;
    }

    /// <summary>The input column names, in the order <see cref="PeftBatch.GetInput{T}"/> indexes them.</summary>
    public IReadOnlyList<string> InputColumnNames { get; }

    /// <summary>Rows scored per <see cref="ScoreBatch"/> call when cursoring through a transformed view.</summary>
    public int BatchSize { get; }

    /// <summary>Always true: outputs depend only on the current row (rows are batched for speed only).</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>This component's host: logging, and the environment's random numbers.</summary>
    private protected IHost Host { get; }

    /// <summary>Names the saved format and its version.</summary>
    private protected abstract PeftModelSignature ModelSignature { get; }

    /// <summary>
    /// Whether <see cref="ScoreBatch"/> may run on several threads at once (parallel cursors). Default false: a cursor
    /// set then has one cursor.
    /// </summary>
    private protected virtual bool CanScoreConcurrently => false;

    internal bool CanScoreConcurrentlyCore => CanScoreConcurrently;

    /// <summary>
    /// The output schema for <paramref name="inputSchema"/>: its columns, then this transformer's outputs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or has an unsupported type.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Bind(inputSchema).OutputSchema;

    /// <summary>
    /// Adds the output columns to <paramref name="input"/>, lazily: rows are scored in batches of
    /// <see cref="BatchSize"/> as a cursor reaches them.
    /// </summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new PeftDataView(this, input, Bind(input.Schema));
    }

    /// <summary>A mapper that scores one row at a time (used by PredictionEngine).</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new PeftRowMapper(this, Bind(inputSchema));

    /// <summary>Saves the header, options and binary streams (called by <c>mlContext.Model.Save</c>).</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        var signature = ModelSignature;
        ctx.CheckAtModel();
        ctx.SetVersionInfo(signature.ToVersionInfo(GetType()));

        // The whole header is written by PeftStageHeader, under one SHA-256 (see there for the layout).
        var contents = new PeftModelWriter(ctx, signature.LoaderSignature);
        SaveContents(contents);
        new PeftStageHeader([.. InputColumnNames], BatchSize, contents.OptionsJson, contents.Streams).Write(ctx.Writer);
    }

    /// <summary>
    /// Declares the added columns for <paramref name="inputSchema"/> (which has passed <see cref="CheckInputColumn"/>):
    /// names, types and annotations. Indexes in <see cref="PeftBatch.GetOutput{T}"/> follow this order.
    /// </summary>
    private protected abstract IReadOnlyList<PeftOutputColumn> GetOutputColumns(DataViewSchema inputSchema);

    /// <summary>
    /// Checks that input column <paramref name="inputIndex"/> has a type this transformer reads; throw
    /// <see cref="ArgumentOutOfRangeException"/> otherwise. The default accepts any type.
    /// </summary>
    private protected virtual void CheckInputColumn(int inputIndex, DataViewSchema.Column column)
    {
    }

    /// <summary>
    /// Computes the outputs of the <see cref="PeftBatch.Count"/> rows of <paramref name="batch"/>: read inputs with
    /// <see cref="PeftBatch.GetInput{T}"/>, fill every active output with <see cref="PeftBatch.GetOutput{T}"/>.
    /// With TorchSharp, wrap the work in <c>torch.NewDisposeScope()</c> and run it under <c>torch.no_grad()</c>.
    /// </summary>
    /// <remarks>
    /// For outputs that are bit-for-bit reproducible (the same after save/load, in another process), keep every tensor
    /// that reaches a matmul in libtorch's own memory: <c>torch.tensor(array)</c> wraps the pinned managed array, whose
    /// alignment changes from call to call, and the BLAS kernels then round differently in the last bits.
    /// <c>torch.tensor(array).clone()</c> (or <see cref="PeftTensorIO.Read"/>) gives aligned storage.
    /// </remarks>
    private protected abstract void ScoreBatch(PeftBatch batch);

    /// <summary>
    /// Writes options and binary streams; the header part common to all PEFT transformers is written already.
    /// </summary>
    private protected abstract void SaveContents(PeftModelWriter writer);

    /// <summary>
    /// For loaders: checks the saved header against <paramref name="signature"/> and reads the common part, the
    /// options and the stream table. Use the result (options, streams) before the loader returns.
    /// </summary>
    /// <exception cref="PeftModelFormatException">The header is truncated or inconsistent.</exception>
    private protected static PeftModelReader ReadModel(IHostEnvironment env, ModelLoadContext ctx,
        PeftModelSignature signature)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(signature);
        string owner = signature.LoaderSignature;
        string entry = EntryName(ctx);
        try
        {
            ctx.CheckAtModel(signature.ToVersionInfo(typeof(PeftTransformerBase)));
        }
        catch (FormatException ex) when (ex is not PeftModelFormatException)
        {
            // ML.NET's message names neither the entry nor the stage; the signature or version bytes are damaged.
            throw new PeftModelFormatException(
                $"{entry}: the model signature or version does not match {owner} ({ex.Message}).", ex);
        }
        uint formatVersion = ctx.Header.VerWritten;
        var reader = ctx.Reader;
        try
        {
            int baseVersion = reader.ReadInt32();
            var header = baseVersion switch
            {
                PeftStageHeader.CurrentVersion => PeftStageHeader.Read(reader, entry),
                // Format 1 has no checksum; its fields are still validated by the loaders.
                1 => PeftStageHeader.ReadLegacy(reader, entry, ctx.LoadNonEmptyString),
                _ => throw new PeftModelFormatException(
                    $"{entry}: unsupported {owner} header version {baseVersion} (this code reads 1 and 2)."),
            };
            var streams = header.Streams.ToDictionary(s => s.Name, StringComparer.Ordinal);
            return new PeftModelReader(ctx, owner, entry, formatVersion, header.Inputs, header.BatchSize,
                header.OptionsJson, streams);
        }
        catch (Exception ex) when (ex is IOException or (FormatException and not PeftModelFormatException))
        {
            throw new PeftModelFormatException($"{entry}: the {owner} header is truncated or corrupted: " +
                $"{ex.Message}", ex);
        }
    }

    /// <summary>The zip entry of a stage's header, for error messages: <c>Transform_000/Model.key</c>.</summary>
    internal static string EntryName(ModelLoadContext ctx)
        => string.IsNullOrEmpty(ctx.Directory) ? "Model.key" : ctx.Directory.Replace('\\', '/') + "/Model.key";

    /// <summary>Runs the scoring hook on a full batch (called by the cursors and rows of this transformer).</summary>
    internal void ScoreBatchCore(PeftBatch batch) => ScoreBatch(batch);

    private PeftBindings Bind(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var inputs = new DataViewSchema.Column[InputColumnNames.Count];
        for (int i = 0; i < inputs.Length; i++)
        {
            var column = inputSchema.GetColumnOrNull(InputColumnNames[i])
                ?? throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Input column '{InputColumnNames[i]}' not found in the input schema.");
            CheckInputColumn(i, column);
            inputs[i] = column;
        }

        var outputs = GetOutputColumns(inputSchema)
            ?? throw new InvalidOperationException($"{GetType().Name} declared no output columns.");
        if (outputs.Count == 0)
            throw new InvalidOperationException($"{GetType().Name} declared no output columns.");
        var duplicate = outputs.GroupBy(o => o.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new InvalidOperationException($"{GetType().Name} declared output column '{duplicate.Key}' twice.");
        return new PeftBindings(inputSchema, inputs, outputs);
    }
}
