using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.BaseModels;

// Why one file of ~440 lines: it is one pattern matcher over one exported graph (find each layer's MatMul/Add
// initializers by the names and shapes exporters give them, in layer order); its helpers all serve that one walk.

/// <summary>Weights and configuration recovered from an ONNX export of a BERT-family encoder.</summary>
internal sealed class OnnxImportResult
{
    public required EncoderConfig Config { get; init; }
    /// <summary>
    /// Hugging Face <c>BertModel</c> state-dict names to managed float32 tensors, Linear weights as [out, in]: the
    /// import never touches libtorch, so a process scoring with ONNX Runtime can prepare a base without it.
    /// </summary>
    public required Dictionary<string, FloatTensor> Weights { get; init; }
    public bool HasPooler { get; init; }
    /// <summary>Where each Linear weight came from (HF name → ONNX initializer name and how it was found).</summary>
    public required Dictionary<string, string> Provenance { get; init; }
    /// <summary>Non-fatal remarks (defaults that were assumed).</summary>
    public required List<string> Notes { get; init; }
}

/// <summary>
/// Maps an ONNX export of a Hugging Face BERT-family encoder (torch.onnx / optimum, unoptimized) back to
/// Hugging Face <c>BertModel</c> parameter names.
/// </summary>
/// <remarks>
/// In these exports, embeddings, biases and LayerNorm parameters keep their Hugging Face names as initializer names,
/// while Linear weights are usually anonymous initializers (<c>927</c>, <c>onnx::MatMul_788</c>) stored transposed,
/// [in, out], as the B input of a <c>MatMul</c>. Each one is found structurally: the <c>Add</c> node that adds the
/// named bias (<c>….query.bias</c>) takes as its other input the output of the <c>MatMul</c> whose B input is the
/// weight (pass-through nodes such as Identity/Reshape/Cast in between are followed). A weight that kept its name is
/// used too, with its layout taken from the node that consumes it (<c>Gemm transB=1</c> holds [out, in]). No
/// initializer name is ever assumed. The number of heads is read from the attention Reshape target
/// (<c>[batch, seq, heads, headSize]</c>) or from the score scaling constant (sqrt(headSize)); LayerNorm epsilon from
/// <c>LayerNormalization.epsilon</c> or the constant added to the variance in the decomposed pattern; the activation is
/// <c>gelu</c> when an Erf is present.
/// </remarks>
internal static class OnnxBertImporter
{
    private static readonly string[] LayerLinears =
    [
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense",
    ];

    private static readonly string[] LayerNorms = ["attention.output.LayerNorm", "output.LayerNorm"];

    // Nodes that may sit between the MatMul and the bias Add without changing which weight is meant.
    private static readonly HashSet<string> PassThrough = new(StringComparer.Ordinal)
    {
        "Identity", "Reshape", "Cast", "Squeeze", "Unsqueeze",
    };

    private static readonly Regex LayerIndex =
        new(@"^encoder\.layer\.(\d+)\.", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    /// <summary>Imports an ONNX model file.</summary>
    public static OnnxImportResult Import(string onnxPath)
    {
        var model = OnnxModel.Load(onnxPath);
        return Import(model, onnxPath);
    }

    /// <summary>Imports a parsed ONNX model; <paramref name="source"/> names it in error messages.</summary>
    public static OnnxImportResult Import(OnnxModel model, string source)
    {
        var graph = model.Graph;
        var init = graph.Initializers;
        var problems = new List<string>();
        var notes = new List<string>();

        foreach (var node in graph.Nodes)
            if (node.OpType is "Attention" or "MultiHeadAttention" or "SkipLayerNormalization"
                or "EmbedLayerNormalization" or "FastGelu" or "BiasGelu")
                throw new NotSupportedException(
                    $"ONNX model '{source}' was optimized for ONNX Runtime (it has fused '{node.OpType}' nodes); " +
                    "import needs an unoptimized export (torch.onnx.export or optimum without --optimize).");

        // ---- Graph indexes ----
        var producer = new Dictionary<string, OnnxNode>(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<OnnxNode>>(StringComparer.Ordinal);
        foreach (var node in graph.Nodes)
        {
            foreach (var o in node.Outputs) if (o.Length > 0) producer[o] = node;
            foreach (var i in node.Inputs)
            {
                if (i.Length == 0) continue;
                if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = [];
                list.Add(node);
            }
        }
        IEnumerable<OnnxNode> ConsumersOf(string value) => consumers.TryGetValue(value, out var l) ? l : [];

        // A constant value: an initializer, or the output of a Constant node.
        OnnxTensor? Constant(string value)
        {
            if (init.TryGetValue(value, out var t)) return t;
            if (producer.TryGetValue(value, out var p) && p.OpType == "Constant") return p.Attribute("value")?.T;
            if (producer.TryGetValue(value, out p) && p.OpType == "Identity" && p.Inputs.Count == 1)
                return Constant(p.Inputs[0]);
            return null;
        }

        OnnxTensor? Named(string name) =>
            init.TryGetValue(name, out var t) && t.DataType == OnnxDataType.Float ? t : null;

        // ---- Sizes from the embedding tables ----
        var word = Named("embeddings.word_embeddings.weight");
        var position = Named("embeddings.position_embeddings.weight");
        var tokenType = Named("embeddings.token_type_embeddings.weight");
        if (word is null || word.Dims.Length != 2)
            throw new InvalidDataException(
                $"ONNX model '{source}' is not a BERT-family encoder export: " +
                "no float initializer 'embeddings.word_embeddings.weight' [vocab, hidden]. " +
                $"Named initializers found: {string.Join(", ", init.Keys.Where(k => k.Contains('.')).Take(12))}" +
                $"{(init.Count > 12 ? ", ..." : "")}.");
        int vocab = checked((int)word.Dims[0]);
        int hidden = checked((int)word.Dims[1]);
        if (position is null) problems.Add("embeddings.position_embeddings.weight: no such float initializer");

        int layers = 0;
        foreach (var name in init.Keys)
        {
            var m = LayerIndex.Match(name);
            if (m.Success) layers = Math.Max(layers, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) + 1);
        }
        if (layers == 0)
            throw new InvalidDataException(
                $"ONNX model '{source}' has no initializer named 'encoder.layer.N.*'; " +
                "it is not a Hugging Face BERT-family encoder export.");

        // ---- Tensors by Hugging Face name ----
        var sources = new List<(string Name, OnnxTensor Tensor, bool Transpose)>();
        var provenance = new Dictionary<string, string>(StringComparer.Ordinal);
        var used = new Dictionary<string, string>(StringComparer.Ordinal); // ONNX initializer -> HF name

        void TakeNamed(string name)
        {
            var t = Named(name);
            if (t is null) problems.Add($"{name}: no such float initializer");
            else sources.Add((name, t, false));
        }

        TakeNamed("embeddings.word_embeddings.weight");
        if (position is not null) sources.Add(("embeddings.position_embeddings.weight", position, false));
        if (tokenType is not null) sources.Add(("embeddings.token_type_embeddings.weight", tokenType, false));
        TakeNamed("embeddings.LayerNorm.weight");
        TakeNamed("embeddings.LayerNorm.bias");

        void TakeLinear(string prefix)
        {
            string biasName = prefix + ".bias", weightName = prefix + ".weight";
            var bias = Named(biasName);
            if (bias is null) { problems.Add($"{biasName}: no such float initializer"); return; }
            sources.Add((biasName, bias, false));
            var found = FindLinearWeight(prefix, out string how);
            if (found is null) { problems.Add($"{weightName}: {how}"); return; }
            var (tensor, transpose) = found.Value;
            if (used.TryGetValue(tensor.Name, out var other))
            {
                problems.Add($"{weightName}: initializer '{tensor.Name}' was already taken for {other}");
                return;
            }
            used[tensor.Name] = weightName;
            long outDim = bias.ElementCount;
            long[] hfShape = transpose
                ? [tensor.Dims.ElementAtOrDefault(1), tensor.Dims.ElementAtOrDefault(0)]
                : tensor.Dims;
            if (tensor.Dims.Length != 2 || hfShape[0] != outDim)
            {
                problems.Add($"{weightName}: initializer '{tensor.Name}' {tensor.ShapeText} " +
                    $"does not fit bias {biasName} [{outDim}]");
                return;
            }
            sources.Add((weightName, tensor, transpose));
            provenance[weightName] = $"'{tensor.Name}' {tensor.ShapeText} ({how})";
        }

        // Finds the weight of the Linear whose bias is prefix.bias.
        (OnnxTensor Tensor, bool Transpose)? FindLinearWeight(string prefix, out string how)
        {
            string biasName = prefix + ".bias";
            var named = Named(prefix + ".weight");
            if (named is not null)
            {
                // A weight that kept its name: its layout follows from the node that reads it.
                var reader = ConsumersOf(named.Name).FirstOrDefault();
                if (reader?.OpType == "Gemm")
                {
                    bool transB = reader.Attribute("transB")?.I == 1;
                    how = $"named, Gemm transB={(transB ? 1 : 0)}";
                    return (named, !transB);
                }
                how = "named, MatMul B [in, out]";
                return (named, true);
            }
            var biasUsers = ConsumersOf(biasName).ToList();
            if (biasUsers.Count == 0) { how = $"the bias '{biasName}' is not used by any node"; return null; }
            foreach (var user in biasUsers)
            {
                if (user.OpType == "Gemm" && user.Inputs.Count >= 3 && user.Inputs[2] == biasName)
                {
                    var w = Constant(user.Inputs[1]);
                    if (w is not null && w.DataType == OnnxDataType.Float)
                    {
                        bool transB = user.Attribute("transB")?.I == 1;
                        how = $"Gemm '{user.Name}' B, transB={(transB ? 1 : 0)}";
                        return (w, !transB);
                    }
                }
                if (user.OpType != "Add" || user.Inputs.Count != 2) continue;
                string other = user.Inputs[0] == biasName ? user.Inputs[1] : user.Inputs[0];
                // Walk back from the Add's other input to the MatMul that produced it.
                for (int hops = 0; hops < 8 && producer.TryGetValue(other, out var p); hops++)
                {
                    if (p.OpType == "MatMul" && p.Inputs.Count == 2)
                    {
                        var (w, transposedInGraph) = WeightInput(p.Inputs[1]);
                        if (w is null) break;
                        how = $"MatMul '{p.Name}' B via Add '{user.Name}'";
                        // MatMul B is [in, out]; a Transpose in the graph means the initializer is already [out, in].
                        return (w, !transposedInGraph);
                    }
                    if (!PassThrough.Contains(p.OpType) || p.Inputs.Count == 0) break;
                    other = p.Inputs[0];
                }
            }
            how = $"no MatMul with a constant weight feeds the Add node(s) that add '{biasName}' " +
                $"({string.Join(", ", biasUsers.Select(u => $"{u.OpType} '{u.Name}'"))})";
            return null;
        }

        // The MatMul B input as an initializer, possibly behind a 2-D Transpose.
        (OnnxTensor? Tensor, bool Transposed) WeightInput(string value)
        {
            var direct = Constant(value);
            if (direct is not null) return direct.DataType == OnnxDataType.Float ? (direct, false) : (null, false);
            if (producer.TryGetValue(value, out var p) && p.OpType == "Transpose" && p.Inputs.Count == 1)
            {
                var perm = p.Attribute("perm")?.Ints;
                var t = Constant(p.Inputs[0]);
                if (t is not null && t.DataType == OnnxDataType.Float && t.Dims.Length == 2
                    && (perm is null || perm.Count == 0 || perm.SequenceEqual([1L, 0L])))
                    return (t, true);
            }
            return (null, false);
        }

        for (int i = 0; i < layers; i++)
        {
            string layer = $"encoder.layer.{i}.";
            foreach (var linear in LayerLinears) TakeLinear(layer + linear);
            foreach (var ln in LayerNorms)
            {
                TakeNamed(layer + ln + ".weight");
                TakeNamed(layer + ln + ".bias");
            }
        }

        bool hasPooler = Named("pooler.dense.bias") is not null;
        if (hasPooler)
        {
            int before = problems.Count;
            TakeLinear("pooler.dense");
            if (problems.Count > before)
            {
                notes.Add("The pooler could not be imported (" + string.Join("; ", problems.Skip(before)) +
                    "); it is left out.");
                problems.RemoveRange(before, problems.Count - before);
                sources.RemoveAll(s => s.Name.StartsWith("pooler.", StringComparison.Ordinal));
                hasPooler = false;
            }
        }

        if (problems.Count > 0)
            throw new InvalidDataException(
                $"ONNX model '{source}' could not be mapped to a BERT encoder; " +
                $"{problems.Count} tensor(s) not found:{Environment.NewLine}  " +
                string.Join(Environment.NewLine + "  ", problems));

        // ---- Configuration ----
        var intermediateBias = Named("encoder.layer.0.intermediate.dense.bias")!;
        int intermediate = checked((int)intermediateBias.ElementCount);
        int heads = FindHeads(graph, hidden, Constant, producer, notes);
        if (heads == 0)
            throw new InvalidDataException(
                $"ONNX model '{source}': the number of attention heads could not be found " +
                $"(no Reshape to [batch, seq, heads, headSize] with heads*headSize = {hidden}, " +
                "and no score scaling by sqrt(headSize)).");
        double eps = FindLayerNormEps(graph, Constant, producer, notes);
        string act = FindActivation(graph, notes);
        bool roberta = graph.Nodes.Any(n => n.OpType == "CumSum");
        if (roberta)
            notes.Add(
                "A CumSum node computes position ids from the padding mask: imported as RoBERTa with pad_token_id 1.");

        var config = new EncoderConfig
        {
            Architecture = roberta ? EncoderArchitecture.Roberta : EncoderArchitecture.Bert,
            HiddenSize = hidden,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            IntermediateSize = intermediate,
            VocabSize = vocab,
            MaxPositionEmbeddings = checked((int)position!.Dims[0]),
            TypeVocabSize = tokenType is null ? 0 : checked((int)tokenType.Dims[0]),
            LayerNormEps = eps,
            HiddenAct = act,
            PadTokenId = roberta ? 1 : 0,
        }.Validate();

        // ---- Tensors (each initializer's bytes are copied once; [in, out] matrices are transposed) ----
        var weights = new Dictionary<string, FloatTensor>(StringComparer.Ordinal);
        foreach (var (name, tensor, transpose) in sources)
        {
            if (tensor.DataType != OnnxDataType.Float)
                throw new InvalidDataException(
                    $"ONNX initializer '{tensor.Name}' for {name} is {tensor.DataType}; " +
                    "only float32 models are supported.");
            var t = tensor.ToFloatTensor();
            weights.Add(name, transpose ? t.Transpose() : t);
        }

        return new OnnxImportResult
        {
            Config = config, Weights = weights, HasPooler = hasPooler, Provenance = provenance, Notes = notes,
        };
    }

    private static int FindHeads(OnnxGraph graph, int hidden, Func<string, OnnxTensor?> constant,
        Dictionary<string, OnnxNode> producer, List<string> notes)
    {
        // 1. Reshape targets [.., .., heads, headSize]: a constant
        // shape or a Concat of (dynamic, dynamic, const, const).
        var votes = new Dictionary<int, int>();
        foreach (var node in graph.Nodes)
        {
            if (node.OpType != "Reshape" || node.Inputs.Count < 2) continue;
            long?[]? shape = null;
            var direct = constant(node.Inputs[1]);
            if (direct is not null && direct.DataType is OnnxDataType.Int64 or OnnxDataType.Int32)
                shape = direct.ToInt64Array().Select(v => (long?)v).ToArray();
            else if (producer.TryGetValue(node.Inputs[1], out var concat) && concat.OpType == "Concat")
            {
                var parts = new List<long?>();
                foreach (var input in concat.Inputs)
                {
                    var c = constant(input);
                    if (c is not null && c.DataType is OnnxDataType.Int64 or OnnxDataType.Int32)
                        parts.AddRange(c.ToInt64Array().Select(v => (long?)v));
                    else parts.Add(null);
                }
                shape = parts.ToArray();
            }
            if (shape is null || shape.Length != 4 || shape[2] is not long h || shape[3] is not long d) continue;
            if (h > 0 && d > 0 && h * d == hidden && h < hidden)
                votes[(int)h] = votes.GetValueOrDefault((int)h) + 1;
        }
        if (votes.Count > 0) return votes.MaxBy(kv => kv.Value).Key;

        // 2. Attention scores divided by sqrt(headSize) (or multiplied
        // by its inverse) after a MatMul of two activations.
        foreach (var node in graph.Nodes)
        {
            if (node.OpType is not ("Div" or "Mul") || node.Inputs.Count != 2) continue;
            if (!producer.TryGetValue(node.Inputs[0], out var mm) || mm.OpType != "MatMul"
                || mm.Inputs.Any(i => constant(i) is not null)) continue;
            var c = constant(node.Inputs[1]);
            if (c is null || c.ElementCount != 1 || c.DataType != OnnxDataType.Float) continue;
            double s = c.ToScalar();
            double headSize = node.OpType == "Div" ? s * s : 1.0 / (s * s);
            int d = (int)Math.Round(headSize);
            if (d > 0 && Math.Abs(headSize - d) < 1e-3 * d && hidden % d == 0)
            {
                notes.Add($"Heads inferred from the attention score scaling (head size {d}).");
                return hidden / d;
            }
        }
        return 0;
    }

    private static double FindLayerNormEps(OnnxGraph graph, Func<string, OnnxTensor?> constant,
        Dictionary<string, OnnxNode> producer, List<string> notes)
    {
        foreach (var node in graph.Nodes)
            if (node.OpType == "LayerNormalization")
                return node.Attribute("epsilon") is { } a ? FloatToDouble(a.F) : 1e-5;
        // Decomposed: Sqrt(Add(ReduceMean(Pow(x - mean, 2)), eps)).
        foreach (var node in graph.Nodes)
        {
            if (node.OpType != "Sqrt" || node.Inputs.Count != 1 || !producer.TryGetValue(node.Inputs[0], out var add)
                || add.OpType != "Add" || add.Inputs.Count != 2) continue;
            for (int k = 0; k < 2; k++)
            {
                if (!producer.TryGetValue(add.Inputs[k], out var mean) || mean.OpType != "ReduceMean") continue;
                var c = constant(add.Inputs[1 - k]);
                if (c is not null && c.ElementCount == 1 && c.DataType == OnnxDataType.Float)
                    return FloatToDouble((float)c.ToScalar());
            }
        }
        notes.Add("No LayerNormalization epsilon found in the graph; assumed 1e-12.");
        return 1e-12;
    }

    // The shortest decimal that round-trips the float32 (1e-12f becomes 1e-12, not 9.9999999600419720e-13).
    private static double FloatToDouble(float f) =>
        double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    private static string FindActivation(OnnxGraph graph, List<string> notes)
    {
        foreach (var node in graph.Nodes)
        {
            if (node.OpType == "Erf") return "gelu";
            if (node.OpType == "Gelu")
                return node.Attribute("approximate")?.StringValue == "tanh" ? "gelu_new" : "gelu";
        }
        if (graph.Nodes.Any(n => n.OpType == "Relu")) return "relu";
        notes.Add("No Erf node: the activation is taken to be the tanh approximation of GELU (gelu_new).");
        return "gelu_new";
    }
}
