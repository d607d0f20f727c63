using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(PeftEnsembleTransformer), null, typeof(SignatureLoadModel),
    "PEFT ensemble transformer", PeftEnsembleTransformer.LoaderSignature)]

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A weighted average of fine-tuned stages that were trained for the same task on the same label values and text
/// columns (for example the ensemble a sweep selects with <c>PeftSweep.SetEnsemble</c>). It adds the same columns as
/// its members: classification averages the class probabilities into <c>Score</c> and predicts the most probable class
/// as <c>PredictedLabel</c>; regression averages the scores. Every member scores every batch, so scoring costs the sum
/// of the members' costs. Saved with <c>mlContext.Model.Save</c>, each member is a nested model inside the zip.
/// The ensemble owns its members: disposing it disposes them.
/// </summary>
public sealed class PeftEnsembleTransformer : PeftTransformerBase, IDisposable
{
    internal const string LoaderSignature = "PeftEnsembleTransformer";
    private static readonly PeftModelSignature Signature = new(LoaderSignature, "PEFTENSM", formatVersion: 0x00010001);
    private const int MaxMembers = 256;

    private readonly PeftTextTransformer[] _members;
    private readonly double[] _weights;

    internal PeftEnsembleTransformer(IHostEnvironment env, IReadOnlyList<PeftTextTransformer> members,
        IReadOnlyList<double>? weights)
        : base(env, nameof(PeftEnsembleTransformer), CheckMembers(members), members[0].BatchSize)
    {
        _members = [.. members];
        _weights = Normalize(weights, _members.Length);
    }

    /// <summary>The stages whose outputs are averaged.</summary>
    public IReadOnlyList<PeftTextTransformer> Members => _members;

    /// <summary>Each member's weight in the average (the same order as <see cref="Members"/>; they sum to 1).</summary>
    public IReadOnlyList<double> Weights => _weights;

    /// <summary>Trainable parameters of all members together.</summary>
    public long TrainableParameterCount => _members.Sum(m => m.TrainableParameterCount);

    private protected override PeftModelSignature ModelSignature => Signature;

    private protected override bool CanScoreConcurrently => true;

    private protected override void CheckInputColumn(int inputIndex, DataViewSchema.Column column) =>
        PeftTextTransformer.CheckTextColumn(column);

    private protected override IReadOnlyList<PeftOutputColumn> GetOutputColumns(DataViewSchema inputSchema) =>
        _members[0].OutputColumns(inputSchema);

    private protected override void ScoreBatch(PeftBatch batch)
    {
        // Members on the same base and length (a sweep's usually are) tokenize a row alike: encode the batch once
        // for them.
        var encoded = new Dictionary<(string, Tokenization.TextTokenizerKind, int, Inference.LongTextSettings),
            Tokenization.TokenizedText[]>();
        var outputs = _members.Select(m =>
        {
            if (!encoded.TryGetValue(m.EncodingKey, out var examples))
                encoded[m.EncodingKey] = examples = m.Encode(batch);
            return m.Predict(examples);
        }).ToList();
        var first = _members[0].Saved;
        PeftTextTransformer.WriteOutputs(batch, Combine(outputs, _weights), first.Task, first.NumOutputs);
    }

    /// <summary>
    /// The weighted sum of the members' output rows, in float as scoring computes it (the first member's arrays are
    /// reused). The sweep uses it to report exactly the metric the saved ensemble will reproduce.
    /// </summary>
    /// <summary>
    /// Writes the ensemble as one self-contained ONNX model: every member's graph on the same inputs, their outputs
    /// averaged with <see cref="Weights"/> as the ensemble scores (inputs, outputs and metadata as
    /// <see cref="PeftTextTransformer.ExportOnnx(string)"/>). Atomic: complete under its name, or not at all.
    /// </summary>
    /// <exception cref="NotSupportedException">Members tokenize differently (another base or maximum length), so no
    /// single set of token ids feeds them all.</exception>
    /// <exception cref="IOException">The path cannot be written; the message names it.</exception>
    public void ExportOnnx(string path) => ExportOnnx(path, new OnnxExportOptions());

    /// <summary><see cref="ExportOnnx(string)"/> with <paramref name="options"/> (e.g. int8 weights).</summary>
    public void ExportOnnx(string path, OnnxExportOptions options) =>
        Onnx.OnnxFile.Write(BuildOnnxModel(options), path);

    /// <summary>Writes the model <see cref="ExportOnnx(string)"/> describes to <paramref name="stream"/>.</summary>
    public void ExportOnnx(Stream stream) => ExportOnnx(stream, new OnnxExportOptions());

    /// <summary><see cref="ExportOnnx(Stream)"/> with <paramref name="options"/> (e.g. int8 weights).</summary>
    public void ExportOnnx(Stream stream, OnnxExportOptions options) =>
        Onnx.OnnxFile.Write(BuildOnnxModel(options), stream);

    internal global::Onnx.ModelProto BuildOnnxModel(OnnxExportOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        for (int m = 1; m < _members.Length; m++)
            if (_members[m].EncodingKey != _members[0].EncodingKey)
                throw new NotSupportedException(
                    $"Ensemble member {m} tokenizes differently from member 0 (base model, maximum length or " +
                    "long-text strategy), so one ONNX model with one set of token inputs cannot feed both. Export " +
                    "the members one by one.");
        var b = new Onnx.OnnxGraphBuilder();
        // Members tokenize alike (checked above), so member 0's inputs serve all.
        var spec = _members[0].Spec(options);
        var (ids, mask, types) = Onnx.StageGraph.Inputs(b, spec);
        string? sum = null;
        for (int m = 0; m < _members.Length; m++)
        {
            var (_, score, _) = _members[m].EmitOnnx(b, ids, mask, types, options);
            b.Scope = $"ensemble/member{m}";
            var weighted = b.Node("Mul", [score, b.Scalar((float)_weights[m])]);
            sum = sum is null ? weighted : b.Node("Add", [sum, weighted]);
        }
        // The most probable class of the averaged probabilities, as WriteOutputs picks it.
        string? predicted = spec.Task == Training.PeftTask.Regression ? null
            : Onnx.StageGraph.PredictedClass(b, sum!);
        Onnx.StageGraph.AddOutputs(b, spec, sum!, predicted);
        var metadata = _members[0].OnnxMetadata().Where(kv => kv.Key != "peft.method").Append(new("peft.ensemble",
            string.Join(", ", _members.Select((s, i) => $"{s.Method.MethodName}:{_weights[i]:R}"))));
        return b.ToModel(metadata);
    }

    internal static float[][] Combine(IReadOnlyList<float[][]> outputs, IReadOnlyList<double> weights)
    {
        var sum = outputs[0];
        float w0 = (float)weights[0];
        foreach (var row in sum) for (int c = 0; c < row.Length; c++) row[c] *= w0;
        for (int m = 1; m < outputs.Count; m++)
        {
            float w = (float)weights[m];
            for (int i = 0; i < sum.Length; i++)
                for (int c = 0; c < sum[i].Length; c++) sum[i][c] += w * outputs[m][i][c];
        }
        return sum;
    }

    private protected override void SaveContents(PeftModelWriter writer)
    {
        writer.WriteOptions(new SavedEnsemble { Weights = _weights });
        for (int m = 0; m < _members.Length; m++)
            writer.WriteModel(MemberName(m), _members[m]);
    }

    private static string MemberName(int index) => $"Member{index:D3}";

    // Found by ML.NET through the LoadableClass attribute above.
    private static PeftEnsembleTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        var reader = ReadModel(env, ctx, Signature);
        var saved = reader.ReadOptions<SavedEnsemble>();
        string entry = reader.EntryName;
        if (saved.FormatVersion != 1)
            throw new PeftModelFormatException($"{entry}: field 'FormatVersion' is {saved.FormatVersion}; this " +
                $"library reads PEFT ensemble format 1.");
        if (saved.Weights is not { Length: > 0 and <= MaxMembers })
            throw new PeftModelFormatException($"{entry}: field 'Weights' holds {saved.Weights?.Length ?? 0} " +
                $"member weight(s); 1 to {MaxMembers} are allowed.");
        // The same rules as the constructor's, and saved weights were normalised: they sum to 1.
        if (saved.Weights.Any(w => !double.IsFinite(w) || w < 0) || Math.Abs(saved.Weights.Sum() - 1) > 1e-9)
            throw new PeftModelFormatException($"{entry}: field 'Weights' must be finite, non-negative and sum to " +
                $"1, got ({string.Join(", ", saved.Weights)}).");
        var members = new List<PeftTextTransformer>();
        try
        {
            for (int m = 0; m < saved.Weights.Length; m++)
                members.Add(reader.ReadModel<PeftTextTransformer>(env, MemberName(m)));
            return new PeftEnsembleTransformer(env, members, saved.Weights);
        }
        catch
        {
            foreach (var member in members) member.Dispose();
            throw;
        }
    }

    private static string[] CheckMembers(IReadOnlyList<PeftTextTransformer> members)
    {
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count == 0) throw new ArgumentException("An ensemble needs at least one member.", nameof(members));
        if (members.Count > MaxMembers)
            throw new ArgumentException($"An ensemble takes at most {MaxMembers} members, got {members.Count}.",
                nameof(members));
        if (members.Any(m => m is null)) throw new ArgumentException("An ensemble member is null.", nameof(members));
        if (members.Distinct().Count() != members.Count)
            throw new ArgumentException("A stage appears twice among the members; give it a larger weight instead.",
                nameof(members));
        var first = members[0].Saved;
        for (int i = 1; i < members.Count; i++)
        {
            var s = members[i].Saved;
            string? why =
                s.Task != first.Task ? $"its task is {s.Task}, member 0's is {first.Task}" :
                !members[i].InputColumnNames.SequenceEqual(members[0].InputColumnNames)
                    ? $"it reads columns ({string.Join(", ", members[i].InputColumnNames)}), " +
                      $"member 0 reads ({string.Join(", ", members[0].InputColumnNames)})" :
                s.ScoreColumn != first.ScoreColumn || s.PredictedLabelColumn != first.PredictedLabelColumn
                    ? $"its output columns are '{s.ScoreColumn}'/'{s.PredictedLabelColumn}', " +
                      $"member 0's are '{first.ScoreColumn}'/'{first.PredictedLabelColumn}'" :
                s.NumOutputs != first.NumOutputs || !(s.Labels?.Values ?? []).SequenceEqual(first.Labels?.Values ?? [])
                    ? $"its label values ({string.Join(", ", s.Labels?.Values ?? [])}) " +
                      $"differ from member 0's ({string.Join(", ", first.Labels?.Values ?? [])})" :
                null;
            if (why is not null)
                throw new ArgumentException($"Ensemble member {i} does not fit member 0: {why}.", nameof(members));
        }
        return [.. members[0].InputColumnNames];
    }

    private static double[] Normalize(IReadOnlyList<double>? weights, int count)
    {
        if (weights is null) return Enumerable.Repeat(1.0 / count, count).ToArray();
        if (weights.Count != count)
            throw new ArgumentException($"{weights.Count} weight(s) for {count} member(s).", nameof(weights));
        if (weights.Any(w => !double.IsFinite(w) || w < 0))
            throw new ArgumentOutOfRangeException(nameof(weights), "Weights must be finite and non-negative.");
        double total = weights.Sum();
        if (!(total > 0))
            throw new ArgumentOutOfRangeException(nameof(weights), "At least one weight must be positive.");
        return weights.Select(w => w / total).ToArray();
    }

    /// <summary>Releases every member's tensors.</summary>
    public void Dispose()
    {
        foreach (var member in _members) member.Dispose();
    }

    /// <summary>What the zip stores besides the members.</summary>
    internal sealed class SavedEnsemble
    {
        public int FormatVersion { get; set; } = 1;
        public double[] Weights { get; set; } = [];
    }
}
