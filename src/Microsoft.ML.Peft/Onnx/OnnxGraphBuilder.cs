using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// Builds one ONNX graph (opset <see cref="Opset"/>, default domain only) through the generated protobuf model:
/// nodes get unique output names under the current <see cref="Scope"/>, weights become initializers, and small
/// constants are shared. Every exporter (the encoder, each method's nodes, the head) writes through this.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    /// <summary>The opset the graph is written for: LayerNormalization needs 17.</summary>
    public const int Opset = 17;

    private readonly GraphProto _graph;
    private readonly HashSet<string> _domains = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);

    /// <summary>A builder for a graph named <paramref name="name"/> (the model, or a Loop's body).</summary>
    public OnnxGraphBuilder(string name = "peft") => _graph = new GraphProto { Name = name };

    /// <summary>The graph built so far (a Loop body goes into its node's attribute).</summary>
    public GraphProto Graph => _graph;

    /// <summary>Declares a graph input of any element type and shape (symbolic or fixed dimensions).</summary>
    public string AddInput(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(name, type, dims));
        _names.Add(name);
        return name;
    }

    /// <summary>Adds a node of a custom-operator domain (e.g. ONNX Runtime Extensions' <c>ai.onnx.contrib</c>),
    /// which the model then imports.</summary>
    public string[] CustomNode(string domain, string op, string[] inputs, int outputs,
        (string Name, object Value)[] attributes)
    {
        var names = Nodes(op, inputs, outputs, attributes);
        _graph.Node[^1].Domain = domain;
        _domains.Add(domain);
        return names;
    }

    /// <summary>Custom-operator domains the graph's nodes use (a body's count for the model too).</summary>
    public IReadOnlyCollection<string> Domains => _domains;

    /// <summary>Adds the domains another builder's nodes use (a Loop body's).</summary>
    public void ImportDomains(OnnxGraphBuilder other) => _domains.UnionWith(other._domains);

    /// <summary>A prefix for the names nodes are given (the module being emitted), for readable graphs.</summary>
    public string Scope { get; set; } = "";

    /// <summary>Declares an int64 graph input [batch, sequence].</summary>
    public string AddTokenInput(string name)
    {
        _graph.Input.Add(ValueInfo(name, TensorProto.Types.DataType.Int64, "batch", "sequence"));
        _names.Add(name);
        return name;
    }

    /// <summary>Declares a graph output of <paramref name="type"/> with symbolic or fixed dimensions.</summary>
    public void AddOutput(string value, string name, TensorProto.Types.DataType type, params object[] dims)
    {
        if (value != name) Node("Identity", [value], name: name);
        _graph.Output.Add(ValueInfo(name, type, dims));
    }

    /// <summary>Adds a float32 initializer and returns its name.</summary>
    public string Initializer(string name, FloatTensor tensor)
    {
        name = Unique(name);
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        proto.Dims.AddRange(tensor.Shape);
        // Wrapped, not copied: a base's weights are hundreds of MB, and the tensor outlives the model (the caller
        // must not change it before the model is written).
        proto.RawData = UnsafeByteOperations.UnsafeWrap(new FloatBytes(tensor.Data).Memory);
        _graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>Adds an initializer of raw little-endian bytes (quantised weights) and returns its name.</summary>
    public string Initializer(string name, TensorProto.Types.DataType type, long[] dims, ReadOnlySpan<byte> bytes)
    {
        name = Unique(name);
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        proto.Dims.AddRange(dims);
        _graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>A shared 1-D int64 constant (shapes, axes, slice bounds).</summary>
    public string Int64s(params long[] values) => Constant(TensorProto.Types.DataType.Int64, false,
        MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), values.Length, "i64_" + string.Join("_", values));

    /// <summary>A shared int64 scalar constant (Range bounds, CumSum's axis).</summary>
    public string Int64Scalar(long value) => Constant(TensorProto.Types.DataType.Int64, true,
        BitConverter.GetBytes(value), 1, "i64s_" + value);

    /// <summary>A shared bool scalar constant.</summary>
    public string Bool(bool value) => Constant(TensorProto.Types.DataType.Bool, true, [value ? (byte)1 : (byte)0], 1,
        "b_" + value);

    /// <summary>A shared float32 scalar constant.</summary>
    public string Scalar(float value) => Constant(TensorProto.Types.DataType.Float, true,
        BitConverter.GetBytes(value), 1, "f32_" + BitConverter.SingleToInt32Bits(value).ToString("x8"));

    private string Constant(TensorProto.Types.DataType type, bool scalar, byte[] bytes, int count, string key)
    {
        if (_constants.TryGetValue(key, out var existing)) return existing;
        var name = Initializer("const/" + key.Replace('-', 'm'), type, scalar ? [] : [count], bytes);
        _constants[key] = name;
        return name;
    }

    /// <summary>
    /// Adds a node and returns the name of its (first) output. <paramref name="attributes"/> values may be long, float,
    /// long[] or string.
    /// </summary>
    public string Node(string op, string[] inputs, (string Name, object Value)[]? attributes = null,
        string? name = null) => Nodes(op, inputs, 1, attributes, name)[0];

    /// <summary>Adds a node with <paramref name="outputs"/> outputs and returns their names.</summary>
    public string[] Nodes(string op, string[] inputs, int outputs, (string Name, object Value)[]? attributes = null,
        string? name = null)
    {
        string first = name ?? Unique(Scope.Length == 0 ? op : Scope + "/" + op);
        if (name is not null) _names.Add(name);
        var node = new NodeProto { OpType = op, Name = first };
        node.Input.AddRange(inputs);
        node.Output.Add(first);
        for (int i = 1; i < outputs; i++) node.Output.Add(Unique(first + "_" + i));
        foreach (var (key, value) in attributes ?? []) node.Attribute.Add(Attribute(key, value));
        _graph.Node.Add(node);
        return node.Output.ToArray();
    }

    /// <summary>The finished model (IR version 8), with the given metadata.</summary>
    public ModelProto ToModel(IEnumerable<KeyValuePair<string, string>> metadata)
    {
        var model = new ModelProto
        {
            IrVersion = 8, ProducerName = "Microsoft.ML.Peft", ProducerVersion = "1.0", Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        foreach (var domain in _domains) model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = 1 });
        foreach (var (key, value) in metadata)
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return model;
    }

    private string Unique(string name)
    {
        if (_names.Add(name)) return name;
        for (int i = 1; ; i++)
            if (_names.Add(name + "_" + i)) return name + "_" + i;
    }

    private static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case GraphProto g: a.Type = AttributeProto.Types.AttributeType.Graph; a.G = g; break;
            default: throw new ArgumentException($"Attribute '{name}' has an unsupported type {value.GetType()}.");
        }
        return a;
    }

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string p
                ? new TensorShapeProto.Types.Dimension { DimParam = p }
                : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}

/// <summary>A float array's bytes as <see cref="Memory{T}"/> of bytes (little-endian), without a copy.</summary>
internal sealed class FloatBytes(float[] data) : System.Buffers.MemoryManager<byte>
{
    public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(data.AsSpan());

    public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) =>
        throw new NotSupportedException("FloatBytes is read through spans only.");

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
