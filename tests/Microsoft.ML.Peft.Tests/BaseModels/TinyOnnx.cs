using Google.Protobuf;

namespace Microsoft.ML.Peft.Tests.BaseModels;

/// <summary>
/// Writes a small ONNX ModelProto shaped like a torch.onnx export of a Hugging Face BertModel (named embeddings,
/// biases and LayerNorm parameters; anonymous, transposed [in, out] MatMul weights), with protobuf bytes written by
/// hand through CodedOutputStream. It is structurally faithful for the importer, not meant to be executed.
/// </summary>
internal sealed class TinyOnnx
{
    public int Hidden { get; init; } = 8;
    public int Heads { get; init; } = 2;
    public int Layers { get; init; } = 2;
    public int Intermediate { get; init; } = 16;
    public int Vocab { get; init; } = 20;
    public int Positions { get; init; } = 10;
    public int Types { get; init; } = 2;
    public float Eps { get; init; } = 1e-12f;
    public bool Pooler { get; init; } = true;
    /// <summary>Layer 1's key bias is added straight to the hidden state: no MatMul, so its weight cannot be
    /// found.</summary>
    public bool OmitLayer1KeyMatMul { get; init; }

    /// <summary>The values the importer must produce, by Hugging Face name (Linear weights [out, in]).</summary>
    public Dictionary<string, (long[] Shape, float[] Data)> Expected { get; } = new(StringComparer.Ordinal);

    private readonly List<byte[]> _nodes = [];
    private readonly List<byte[]> _initializers = [];
    /// <summary>Seed of the random weights; a different seed gives a different model of the same shape.</summary>
    public int Seed { get; init; } = 1234;
    private Random? _randomInstance;
    private Random _random => _randomInstance ??= new Random(Seed);
    private int _anonymous = 900;
    private int _values;

    public byte[] Build()
    {
        int headSize = Hidden / Heads;
        Named("embeddings.word_embeddings.weight", [Vocab, Hidden]);
        Named("embeddings.position_embeddings.weight", [Positions, Hidden]);
        Named("embeddings.token_type_embeddings.weight", [Types, Hidden]);
        Named("embeddings.LayerNorm.weight", [Hidden], rawData: false);
        Named("embeddings.LayerNorm.bias", [Hidden]);
        Node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], ["w_emb"]);
        Node("Gather", ["embeddings.token_type_embeddings.weight", "token_type_ids"], ["t_emb"]);
        Node("Add", ["w_emb", "t_emb"], ["wt_emb"]);
        Node("Gather", ["embeddings.position_embeddings.weight", "position_ids"], ["p_emb"]);
        Node("Add", ["wt_emb", "p_emb"], ["emb"]);
        string x = LayerNorm("emb", "embeddings.LayerNorm");

        string headsConst = Int64Initializer([Heads]);
        string headSizeConst = Int64Initializer([headSize]);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            string q = Linear(x, p + "attention.self.query", Hidden, Hidden);
            string k = OmitLayer1KeyMatMul && l == 1 ? AddBiasOnly(x, p + "attention.self.key", Hidden)
                : Linear(x, p + "attention.self.key", Hidden, Hidden);
            string v = Linear(x, p + "attention.self.value", Hidden, Hidden, identityBeforeAdd: l == 1);
            // Reshape to [batch, seq, heads, headSize] through Concat(Shape-derived, Shape-derived, heads, headSize).
            string shapeOf = Value(), d0 = Value(), d1 = Value(), shape = Value(), kr = Value();
            Node("Shape", [k], [shapeOf]);
            Node("Gather", [shapeOf, Constant(0)], [d0]);
            Node("Gather", [shapeOf, Constant(1)], [d1]);
            Node("Concat", [d0, d1, headsConst, headSizeConst], [shape], ints: ("axis", [0]));
            Node("Reshape", [k, shape], [kr]);
            string scores = Value(), scaled = Value(), probs = Value(), context = Value();
            Node("MatMul", [q, kr], [scores]);
            Node("Div", [scores, FloatConstant(MathF.Sqrt(headSize))], [scaled]);
            Node("Softmax", [scaled], [probs]);
            Node("MatMul", [probs, v], [context]);
            string attn = Linear(context, p + "attention.output.dense", Hidden, Hidden);
            string residual = Value();
            Node("Add", [attn, x], [residual]);
            string ln1 = LayerNorm(residual, p + "attention.output.LayerNorm");
            string inter = Linear(ln1, p + "intermediate.dense", Intermediate, Hidden, transposeNode: l == 0);
            string div = Value(), erf = Value(), one = Value(), mul = Value(), act = Value();
            Node("Div", [inter, FloatConstant(MathF.Sqrt(2))], [div]);
            Node("Erf", [div], [erf]);
            Node("Add", [erf, FloatConstant(1)], [one]);
            Node("Mul", [inter, one], [mul]);
            Node("Mul", [mul, FloatConstant(0.5f)], [act]);
            string output = Linear(act, p + "output.dense", Hidden, Intermediate);
            string residual2 = Value();
            Node("Add", [output, ln1], [residual2]);
            x = LayerNorm(residual2, p + "output.LayerNorm", outputName: l == Layers - 1 ? "last_hidden_state" : null);
        }

        var outputs = new List<string> { "last_hidden_state" };
        if (Pooler)
        {
            // The pooler keeps its name and is read by Gemm transB=1: stored [out, in] already.
            var w = Named("pooler.dense.weight", [Hidden, Hidden]);
            Named("pooler.dense.bias", [Hidden]);
            string first = Value(), dense = Value();
            Node("Gather", ["last_hidden_state", Constant(0)], [first], ints: ("axis", [1]));
            Node("Gemm", [first, "pooler.dense.weight", "pooler.dense.bias"], [dense], ints: ("transB", [1]));
            Node("Tanh", [dense], ["pooler_output"]);
            outputs.Add("pooler_output");
            _ = w;
        }

        byte[] graph = Message(o =>
        {
            foreach (var n in _nodes) Sub(o, 1, n);
            o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString("tiny_bert");
            foreach (var t in _initializers) Sub(o, 5, t);
            foreach (var input in new[] { "input_ids", "attention_mask", "token_type_ids" })
                Sub(o, 11, ValueInfo(input));
            foreach (var output in outputs) Sub(o, 12, ValueInfo(output));
        });
        return Message(o =>
        {
            o.WriteTag(1, WireFormat.WireType.Varint); o.WriteInt64(7);
            o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString("TinyOnnx");
            Sub(o, 7, graph);
            Sub(o, 8, Message(op => { op.WriteTag(2, WireFormat.WireType.Varint); op.WriteInt64(13); }));
        });
    }

    private string Value() => $"v{_values++}";

    private string Linear(string input, string prefix, int outDim, int inDim, bool transposeNode = false,
        bool identityBeforeAdd = false)
    {
        var weight = RandomData(outDim * inDim); // [out, in], row-major
        Expected[prefix + ".weight"] = ([outDim, inDim], weight);
        string b = prefix + ".bias";
        Named(b, [outDim]);
        string matmulB;
        if (transposeNode)
        {
            // Stored [out, in] behind a Transpose node.
            matmulB = Initializer(Anonymous(), [outDim, inDim], weight);
            string t = Value();
            Node("Transpose", [matmulB], [t], ints: ("perm", [1, 0]));
            matmulB = t;
        }
        else
        {
            matmulB = Initializer(Anonymous(), [inDim, outDim], Transpose(weight, outDim, inDim));
        }
        string mm = Value(), sum = Value();
        Node("MatMul", [input, matmulB], [mm]);
        if (identityBeforeAdd)
        {
            string id = Value();
            Node("Identity", [mm], [id]);
            mm = id;
        }
        Node("Add", [b, mm], [sum]); // bias first, as torch.onnx exports it
        return sum;
    }

    private string AddBiasOnly(string input, string prefix, int outDim)
    {
        string b = prefix + ".bias", sum = Value();
        Named(b, [outDim]);
        Node("Add", [b, input], [sum]);
        return sum;
    }

    private string LayerNorm(string input, string prefix, string? outputName = null)
    {
        Named(prefix + ".weight", [Hidden], rawData: false);
        Named(prefix + ".bias", [Hidden]);
        string mean = Value(), centered = Value(), sq = Value(), variance = Value(), plus = Value(), std = Value(),
            norm = Value(), scaled = Value();
        string output = outputName ?? Value();
        Node("ReduceMean", [input], [mean], ints: ("axes", [-1]));
        Node("Sub", [input, mean], [centered]);
        Node("Pow", [centered, FloatConstant(2)], [sq]);
        Node("ReduceMean", [sq], [variance], ints: ("axes", [-1]));
        Node("Add", [variance, FloatConstant(Eps)], [plus]);
        Node("Sqrt", [plus], [std]);
        Node("Div", [centered, std], [norm]);
        Node("Mul", [norm, prefix + ".weight"], [scaled]);
        Node("Add", [scaled, prefix + ".bias"], [output]);
        return output;
    }

    private float[] RandomData(int n)
    {
        var data = new float[n];
        for (int i = 0; i < n; i++) data[i] = (float)(_random.NextDouble() * 2 - 1);
        return data;
    }

    private static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = m[r * cols + c];
        return t;
    }

    private string Anonymous() => (_anonymous++).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private float[] Named(string name, long[] shape, bool rawData = true)
    {
        var data = RandomData((int)shape.Aggregate(1L, (a, b) => a * b));
        Expected[name] = (shape, data);
        Initializer(name, shape, data, rawData);
        return data;
    }

    private string Initializer(string name, long[] dims, float[] data, bool rawData = true)
    {
        _initializers.Add(FloatTensor(name, dims, data, rawData));
        return name;
    }

    private string Int64Initializer(long[] values)
    {
        string name = Anonymous();
        _initializers.Add(Int64Tensor(name, [values.Length], values));
        return name;
    }

    private string Constant(long scalar)
    {
        string output = Value();
        Node("Constant", [], [output], tensor: ("value", Int64Tensor("", [], [scalar])));
        return output;
    }

    private string FloatConstant(float scalar)
    {
        string output = Value();
        Node("Constant", [], [output], tensor: ("value", FloatTensor("", [], [scalar], rawData: true)));
        return output;
    }

    private void Node(string op, string[] inputs, string[] outputs, (string Name, long[] Values)? ints = null,
        (string Name, byte[] Tensor)? tensor = null)
    {
        _nodes.Add(Message(o =>
        {
            foreach (var i in inputs) { o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString(i); }
            foreach (var x in outputs) { o.WriteTag(2, WireFormat.WireType.LengthDelimited); o.WriteString(x); }
            o.WriteTag(3, WireFormat.WireType.LengthDelimited); o.WriteString($"{op}_{_nodes.Count}");
            o.WriteTag(4, WireFormat.WireType.LengthDelimited); o.WriteString(op);
            if (ints is { } a)
            {
                Sub(o, 5, Message(at =>
                {
                    at.WriteTag(1, WireFormat.WireType.LengthDelimited); at.WriteString(a.Name);
                    if (a.Values.Length == 1 && a.Name != "axes" && a.Name != "perm")
                    {
                        at.WriteTag(3, WireFormat.WireType.Varint); at.WriteInt64(a.Values[0]);
                        at.WriteTag(20, WireFormat.WireType.Varint); at.WriteInt32(2); // INT
                    }
                    else
                    {
                        // Unpacked repeated ints, as onnx writes them (proto2).
                        foreach (long v in a.Values) { at.WriteTag(8, WireFormat.WireType.Varint); at.WriteInt64(v); }
                        at.WriteTag(20, WireFormat.WireType.Varint); at.WriteInt32(7); // INTS
                    }
                }));
            }
            if (tensor is { } t)
            {
                Sub(o, 5, Message(at =>
                {
                    at.WriteTag(1, WireFormat.WireType.LengthDelimited); at.WriteString(t.Name);
                    Sub(at, 5, t.Tensor);
                    at.WriteTag(20, WireFormat.WireType.Varint); at.WriteInt32(4); // TENSOR
                }));
            }
        }));
    }

    internal static byte[] FloatTensor(string name, long[] dims, float[] data, bool rawData)
        => Message(o =>
        {
            WritePackedInt64(o, 1, dims);
            o.WriteTag(2, WireFormat.WireType.Varint); o.WriteInt32(1); // FLOAT
            if (!rawData)
            {
                o.WriteTag(4, WireFormat.WireType.LengthDelimited);
                o.WriteLength(data.Length * 4);
                foreach (float f in data) o.WriteFloat(f);
            }
            if (name.Length > 0) { o.WriteTag(8, WireFormat.WireType.LengthDelimited); o.WriteString(name); }
            if (rawData)
            {
                var bytes = new byte[data.Length * 4];
                Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
                o.WriteTag(9, WireFormat.WireType.LengthDelimited); o.WriteBytes(ByteString.CopyFrom(bytes));
            }
        });

    internal static byte[] Int64Tensor(string name, long[] dims, long[] data)
        => Message(o =>
        {
            WritePackedInt64(o, 1, dims);
            o.WriteTag(2, WireFormat.WireType.Varint); o.WriteInt32(7); // INT64
            if (name.Length > 0) { o.WriteTag(8, WireFormat.WireType.LengthDelimited); o.WriteString(name); }
            var bytes = new byte[data.Length * 8];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            o.WriteTag(9, WireFormat.WireType.LengthDelimited); o.WriteBytes(ByteString.CopyFrom(bytes));
        });

    private static void WritePackedInt64(CodedOutputStream o, int field, long[] values)
    {
        if (values.Length == 0) return;
        int size = values.Sum(v => CodedOutputStream.ComputeInt64Size(v));
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteLength(size);
        foreach (long v in values) o.WriteInt64(v);
    }

    private static byte[] ValueInfo(string name) =>
        Message(o => { o.WriteTag(1, WireFormat.WireType.LengthDelimited); o.WriteString(name); });

    internal static byte[] Message(Action<CodedOutputStream> write)
    {
        using var stream = new MemoryStream();
        using (var o = new CodedOutputStream(stream, leaveOpen: true))
        {
            write(o);
            o.Flush();
        }
        return stream.ToArray();
    }

    internal static void Sub(CodedOutputStream o, int field, byte[] message)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(message));
    }

    /// <summary>A WordPiece vocabulary with <paramref name="size"/> entries (uncased).</summary>
    public static string VocabText(int size)
    {
        var tokens = new List<string> { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
        for (int i = tokens.Count; i < size; i++) tokens.Add("tok" + i);
        return string.Join("\n", tokens) + "\n";
    }

    /// <summary>Writes the model and a vocabulary into <paramref name="folder"/>; returns (onnx path, vocab
    /// path).</summary>
    public (string Onnx, string Vocab) WriteTo(string folder)
    {
        Directory.CreateDirectory(folder);
        string onnx = Path.Combine(folder, "tiny.onnx"), vocab = Path.Combine(folder, "vocab.txt");
        File.WriteAllBytes(onnx, Build());
        File.WriteAllText(vocab, VocabText(Vocab));
        return (onnx, vocab);
    }
}
