using System.Collections.Concurrent;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.MLNet;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

[assembly: LoadableClass(typeof(TinyTextScorer), null, typeof(SignatureLoadModel), "PEFT tiny text scorer (tests)",
    TinyTextScorer.LoaderSignature)]

namespace Microsoft.ML.Peft.Tests.MLNet;

/// <summary>
/// The smallest real PEFT-style transformer: text -> hashed character trigrams -> a TorchSharp weight matrix ->
/// softmax Score vector and PredictedLabel key, with class names (from the training label's KeyValues) as annotations.
/// The weights travel in the model .zip as a binary stream. It lives in the test assembly, which shows that a loader
/// does not have to be in Microsoft.ML.Peft: ML.NET loads whatever assembly the model header names.
/// </summary>
internal sealed class TinyTextScorer : PeftTransformerBase
{
    internal const string LoaderSignature = "PeftTinyTextScorer";
    internal const string WeightsStream = "Weights.bin";
    private static readonly PeftModelSignature Signature = new(LoaderSignature, "PEFTTINY", formatVersion: 0x00010001);

    private readonly TinyTextScorerOptions _options;
    private readonly Tensor _weights; // [classes, buckets]

    internal TinyTextScorer(IHostEnvironment env, string textColumn, TinyTextScorerOptions options, Tensor weights,
        int batchSize = DefaultBatchSize)
        : base(env, nameof(TinyTextScorer), [textColumn], batchSize)
    {
        if (options.Labels.Length == 0 || options.Buckets <= 0)
            throw new ArgumentException("Options need labels and a positive bucket count.", nameof(options));
        if (weights.shape.Length != 2 || weights.shape[0] != options.Labels.Length
            || weights.shape[1] != options.Buckets || weights.dtype != ScalarType.Float32)
            throw new ArgumentException($"Weights must be float32 [{options.Labels.Length}, {options.Buckets}].",
                nameof(weights));
        _options = options;
        _weights = weights;
    }

    /// <summary>Row counts of the ScoreBatch calls so far (test observation).</summary>
    public ConcurrentQueue<int> ObservedBatchSizes { get; } = new();

    /// <summary>Called after each stream is written; a test makes it throw to simulate a failure mid-save.</summary>
    public Action<string>? AfterStreamWritten { get; set; }

    public IReadOnlyList<string> Labels => _options.Labels;

    public float[] GetWeights() => _weights.data<float>().ToArray();

    private protected override PeftModelSignature ModelSignature => Signature;

    private protected override bool CanScoreConcurrently => true;

    private protected override void CheckInputColumn(int inputIndex, DataViewSchema.Column column)
    {
        if (column.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(nameof(column),
                $"Input column '{column.Name}' must be text, not {column.Type}.");
    }

    private protected override IReadOnlyList<PeftOutputColumn> GetOutputColumns(DataViewSchema inputSchema)
    {
        int classes = _options.Labels.Length;
        return
        [
            new PeftOutputColumn(_options.ScoreColumn, new VectorDataViewType(NumberDataViewType.Single, classes),
                PeftAnnotations.MulticlassScore(_options.Labels)),
            new PeftOutputColumn(_options.PredictedLabelColumn, new KeyDataViewType(typeof(uint), classes),
                PeftAnnotations.MulticlassPredictedLabel(_options.Labels)),
        ];
    }

    private protected override void ScoreBatch(PeftBatch batch)
    {
        ObservedBatchSizes.Enqueue(batch.Count);
        int rows = batch.Count, buckets = _options.Buckets, classes = _options.Labels.Length;
        var texts = batch.GetInput<ReadOnlyMemory<char>>(0);
        var features = new float[rows * buckets];
        for (int i = 0; i < rows; i++)
            Featurize(texts[i].Span, features.AsSpan(i * buckets, buckets));

        float[] probabilities;
        using (torch.NewDisposeScope())
        using (torch.no_grad())
        {
            // torch.tensor(array) wraps the pinned managed array; its alignment varies from call to call, and so
            // would the last bits of the matmul. A copy in libtorch's (64-byte aligned) memory makes results
            // reproducible.
            var x = torch.tensor(features, [rows, buckets]).clone();
            var p = torch.nn.functional.softmax(x.matmul(_weights.t()), 1);
            probabilities = p.data<float>().ToArray();
        }

        var scores = batch.GetOutput<VBuffer<float>>(0);
        var predicted = batch.GetOutput<uint>(1);
        for (int i = 0; i < rows; i++)
        {
            var row = probabilities.AsSpan(i * classes, classes);
            var editor = VBufferEditor.Create(ref scores[i], classes);
            row.CopyTo(editor.Values);
            scores[i] = editor.Commit();
            int best = 0;
            for (int c = 1; c < classes; c++)
            {
                if (row[c] > row[best])
                    best = c;
            }
            predicted[i] = (uint)best + 1;
        }
    }

    private protected override void SaveContents(PeftModelWriter writer)
    {
        writer.WriteOptions(_options);
        writer.WriteStream(WeightsStream, w => PeftTensorIO.Write(w, _weights));
        AfterStreamWritten?.Invoke(WeightsStream);
    }

    // Found by ML.NET through the LoadableClass attribute above.
    private static TinyTextScorer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        var model = ReadModel(env, ctx, Signature);
        var options = model.ReadOptions<TinyTextScorerOptions>();
        Tensor? weights = null;
        model.ReadStream(WeightsStream, reader => weights = PeftTensorIO.Read(reader));
        return new TinyTextScorer(env, model.InputColumnNames[0], options, weights!, model.BatchSize);
    }

    /// <summary>Hashed, L2-normalised character-trigram counts (FNV-1a, so identical in every process).</summary>
    internal static void Featurize(ReadOnlySpan<char> text, Span<float> features)
    {
        features.Clear();
        Span<char> padded = stackalloc char[text.Length + 2];
        padded[0] = ' ';
        padded[^1] = ' ';
        for (int i = 0; i < text.Length; i++)
            padded[i + 1] = char.ToLowerInvariant(text[i]);
        for (int i = 0; i + 3 <= padded.Length; i++)
        {
            uint hash = 2166136261;
            foreach (char c in padded.Slice(i, 3))
                hash = (hash ^ c) * 16777619;
            features[(int)(hash % (uint)features.Length)] += 1f;
        }
        float norm = 0;
        foreach (float f in features)
            norm += f * f;
        if (norm > 0)
        {
            float scale = 1f / MathF.Sqrt(norm);
            for (int i = 0; i < features.Length; i++)
                features[i] *= scale;
        }
    }
}

/// <summary>Options of <see cref="TinyTextScorer"/>, saved as JSON in the model header.</summary>
internal sealed class TinyTextScorerOptions
{
    public string[] Labels { get; set; } = [];

    public int Buckets { get; set; }

    public string ScoreColumn { get; set; } = "Score";

    public string PredictedLabelColumn { get; set; } = "PredictedLabel";
}

/// <summary>"Trains" a <see cref="TinyTextScorer"/>: each class's weights are its scaled mean feature vector.</summary>
internal sealed class TinyTextScorerEstimator(MLContext ml, string textColumn = "Text", string labelColumn = "Label",
    int buckets = 256, int batchSize = PeftTransformerBase.DefaultBatchSize)
    : IEstimator<TinyTextScorer>
{
    public TinyTextScorer Fit(IDataView input)
    {
        var labels = PeftAnnotations.GetKeyValues(input.Schema[labelColumn]);
        int classes = labels.Length;
        var sums = new float[classes * buckets];
        var features = new float[buckets];
        var text = input.Schema[textColumn];
        var label = input.Schema[labelColumn];
        using (var cursor = input.GetRowCursor([text, label]))
        {
            var textGetter = cursor.GetGetter<ReadOnlyMemory<char>>(text);
            var labelGetter = cursor.GetGetter<uint>(label);
            ReadOnlyMemory<char> t = default;
            uint key = 0;
            while (cursor.MoveNext())
            {
                textGetter(ref t);
                labelGetter(ref key);
                if (key == 0)
                    continue; // missing label
                TinyTextScorer.Featurize(t.Span, features);
                var row = sums.AsSpan((int)(key - 1) * buckets, buckets);
                for (int i = 0; i < buckets; i++)
                    row[i] += features[i];
            }
        }
        for (int c = 0; c < classes; c++)
        {
            var row = sums.AsSpan(c * buckets, buckets);
            float norm = 0;
            foreach (float v in row)
                norm += v * v;
            float scale = norm > 0 ? 8f / MathF.Sqrt(norm) : 0f;
            for (int i = 0; i < buckets; i++)
                row[i] *= scale;
        }
        var options = new TinyTextScorerOptions { Labels = labels, Buckets = buckets };
        return new TinyTextScorer(ml, textColumn, options, CopyToTorchMemory(sums, classes, buckets), batchSize);
    }

    private static Tensor CopyToTorchMemory(float[] values, long rows, long columns)
    {
        using var wrapped = torch.tensor(values, [rows, columns]);
        return wrapped.clone();
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        var keyValues = new SchemaShape([new SchemaShape.Column(PeftAnnotations.KeyValuesKind,
            SchemaShape.Column.VectorKind.Vector, TextDataViewType.Instance, false)]);
        columns["Score"] =
            new SchemaShape.Column("Score", SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false);
        columns["PredictedLabel"] = new SchemaShape.Column("PredictedLabel", SchemaShape.Column.VectorKind.Scalar,
            NumberDataViewType.UInt32, true, keyValues);
        return new SchemaShape(columns.Values);
    }
}
