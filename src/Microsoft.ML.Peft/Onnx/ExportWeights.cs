namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// The weights an export reads: the plain model's (base encoder + head, under <c>PeftModel</c> names such as
/// <c>bert.encoder.layer.0.attention.self.query.weight</c> and <c>classifier.weight</c>) and the tensors that trained
/// (as saved). Trained tensors that are plain weights under their own name (BitFit's biases, LayerNorm tuning, full
/// fine-tuning, the head; a wrapped layer's <c>base_layer</c> counts as the layer) replace them up front; each method
/// takes the rest with <see cref="Take"/>. An export fails if a trained tensor is left untaken, so a method can never
/// drop part of what it learned without notice.
/// </summary>
internal sealed class ExportWeights
{
    private readonly Dictionary<string, FloatTensor> _plain;
    private readonly Dictionary<string, FloatTensor> _trained;
    private readonly HashSet<string> _taken = new(StringComparer.Ordinal);

    /// <summary>Takes ownership of both dictionaries.</summary>
    public ExportWeights(Dictionary<string, FloatTensor> plain, Dictionary<string, FloatTensor> trained)
    {
        _plain = plain;
        _trained = trained;
        foreach (var (name, tensor) in trained)
        {
            string plainName = name.Replace(".base_layer.", ".", StringComparison.Ordinal);
            if (!_plain.TryGetValue(plainName, out var existing)) continue;
            existing.RequireSameShape(tensor, name);
            _plain[plainName] = tensor;
            _taken.Add(name);
        }
    }

    /// <summary>A plain weight (base or head, with trained replacements applied).</summary>
    public FloatTensor Plain(string name) => _plain.TryGetValue(name, out var t) ? t
        : throw new InvalidOperationException($"The model has no weight '{name}' to export.");

    /// <summary>Whether the plain model has <paramref name="name"/> (the pooler, token types are optional).</summary>
    public bool HasPlain(string name) => _plain.ContainsKey(name);

    /// <summary>Replaces a plain weight (a merged update); the shape must not change.</summary>
    public void SetPlain(string name, FloatTensor value)
    {
        Plain(name).RequireSameShape(value, name);
        _plain[name] = value;
    }

    /// <summary>Names of every trained tensor, taken or not.</summary>
    public IEnumerable<string> TrainedNames => _trained.Keys;

    /// <summary>Whether a trained tensor <paramref name="name"/> exists.</summary>
    public bool HasTrained(string name) => _trained.ContainsKey(name);

    /// <summary>Takes the trained tensor <paramref name="name"/> for the method's nodes or merge.</summary>
    public FloatTensor Take(string name)
    {
        if (!_trained.TryGetValue(name, out var t))
            throw new InvalidOperationException($"The saved model has no trained tensor '{name}' to export.");
        _taken.Add(name);
        return t;
    }

    /// <summary>Trained tensors nothing has taken (an export with any is refused).</summary>
    public IReadOnlyList<string> Untaken => _trained.Keys.Where(k => !_taken.Contains(k)).ToList();
}
