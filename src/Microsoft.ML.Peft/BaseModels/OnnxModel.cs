using System.Runtime.InteropServices;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.ML.Peft.Onnx;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.BaseModels;

// A minimal, read-only ONNX model reader.
//
// Instead of code generated from onnx.proto, small hand-written walkers read only the fields the importer needs,
// through Google.Protobuf's CodedInputStream (which handles varints, nested-message limits and skipping unknown
// fields). Field numbers, from onnx/onnx.proto (proto2, stable since IR version 3):
//   ModelProto:         ir_version=1 (int64), producer_name=2, producer_version=3, graph=7 (GraphProto), opset_import=8
//   OperatorSetIdProto: domain=1, version=2 (int64)
//   GraphProto:         node=1 (NodeProto), name=2, initializer=5 (TensorProto), input=11, output=12 (ValueInfoProto)
//   ValueInfoProto:     name=1
//   NodeProto:          input=1, output=2, name=3, op_type=4, attribute=5 (AttributeProto), domain=7
//   AttributeProto:     name=1, f=2 (float), i=3 (int64), s=4 (bytes), t=5 (TensorProto), floats=7, ints=8, type=20
//   TensorProto:        dims=1 (int64), data_type=2 (int32), float_data=4, int32_data=5, int64_data=7, name=8,
//                       raw_data=9 (bytes), double_data=10, external_data=13, data_location=14
// Repeated numeric fields are accepted both packed and unpacked, as protobuf requires of parsers.
//
// Why one file of ~550 lines: it is the reader of one schema (the seven message types above and their walkers,
// which call each other); split apart, the field table and the code that follows it would no longer sit together.
//
// Efficiency: the whole model is read once into one byte array; raw_data is kept as a slice of that array (never
// copied by the reader) and copied exactly once, into a TorchSharp tensor, by OnnxTensor.ToTorch.
//
// Why not the generated Onnx.ModelProto the exporter writes with: Google.Protobuf copies every raw_data out of its
// input while parsing, which measured 2x the peak memory and tens of times the parse time on the embedded MiniLM
// (docs/onnx.md, "Reading ONNX models").

/// <summary>ONNX <c>TensorProto.DataType</c> values.</summary>
internal enum OnnxDataType
{
    Undefined = 0, Float = 1, UInt8 = 2, Int8 = 3, UInt16 = 4, Int16 = 5, Int32 = 6, Int64 = 7, String = 8, Bool = 9,
    Float16 = 10, Double = 11, UInt32 = 12, UInt64 = 13, Complex64 = 14, Complex128 = 15, BFloat16 = 16,
}

/// <summary>An ONNX tensor (an initializer or a constant attribute).</summary>
internal sealed class OnnxTensor
{
    public string Name { get; internal set; } = "";
    public long[] Dims { get; internal set; } = [];
    public OnnxDataType DataType { get; internal set; }
    /// <summary>
    /// Little-endian element bytes when the producer used <c>raw_data</c>; a slice of the model buffer.
    /// </summary>
    public ReadOnlyMemory<byte> RawData { get; internal set; }
    public bool HasRawData { get; internal set; }
    public List<float>? FloatData { get; internal set; }
    public List<long>? Int64Data { get; internal set; }
    public List<int>? Int32Data { get; internal set; }
    public List<double>? DoubleData { get; internal set; }
    /// <summary>
    /// True when the data lives in an external file (<c>data_location = EXTERNAL</c> or <c>external_data</c> entries).
    /// </summary>
    public bool IsExternal { get; internal set; }

    public long ElementCount
    {
        get { long n = 1; foreach (long d in Dims) n *= d; return n; }
    }

    public string ShapeText => "[" + string.Join(",", Dims) + "]";

    private static int ElementSize(OnnxDataType t) => t switch
    {
        OnnxDataType.Float or OnnxDataType.Int32 or OnnxDataType.UInt32 => 4,
        OnnxDataType.Int64 or OnnxDataType.UInt64 or OnnxDataType.Double => 8,
        OnnxDataType.Float16 or OnnxDataType.BFloat16 or OnnxDataType.Int16 or OnnxDataType.UInt16 => 2,
        OnnxDataType.UInt8 or OnnxDataType.Int8 or OnnxDataType.Bool => 1,
        _ => throw new NotSupportedException($"ONNX tensor data type {t} is not supported."),
    };

    private void EnsureInline()
    {
        if (IsExternal)
            throw new NotSupportedException(
                $"ONNX initializer '{Name}' stores its data in an external file; " +
                "models with external data are not supported. " +
                "Re-export the model as a single .onnx file (under 2 GB).");
    }

    private void CheckRawLength()
    {
        long expected = ElementCount * ElementSize(DataType);
        if (RawData.Length != expected)
            throw new InvalidDataException(
                $"ONNX initializer '{Name}' {ShapeText} of type {DataType} has {RawData.Length} bytes of raw data, " +
                $"expected {expected}.");
    }

    /// <summary>The values as float32 (FLOAT tensors only).</summary>
    public float[] ToFloatArray()
    {
        EnsureInline();
        if (DataType != OnnxDataType.Float)
            throw new InvalidDataException($"ONNX tensor '{Name}' is {DataType}, expected FLOAT.");
        if (HasRawData) { CheckRawLength(); return MemoryMarshal.Cast<byte, float>(RawData.Span).ToArray(); }
        return FloatData?.ToArray() ?? [];
    }

    /// <summary>The values as int64 (INT64 and INT32 tensors).</summary>
    public long[] ToInt64Array()
    {
        EnsureInline();
        switch (DataType)
        {
            case OnnxDataType.Int64:
                if (HasRawData) { CheckRawLength(); return MemoryMarshal.Cast<byte, long>(RawData.Span).ToArray(); }
                return Int64Data?.ToArray() ?? [];
            case OnnxDataType.Int32:
                if (HasRawData)
                {
                    CheckRawLength();
                    return MemoryMarshal.Cast<byte, int>(RawData.Span).ToArray().Select(v => (long)v).ToArray();
                }
                return Int32Data?.Select(v => (long)v).ToArray() ?? [];
            default:
                throw new InvalidDataException($"ONNX tensor '{Name}' is {DataType}, expected INT64 or INT32.");
        }
    }

    /// <summary>A scalar (or one-element) numeric value as double, whatever the numeric type.</summary>
    public double ToScalar()
    {
        if (ElementCount != 1) throw new InvalidDataException($"ONNX tensor '{Name}' {ShapeText} is not a scalar.");
        return DataType switch
        {
            OnnxDataType.Float => ToFloatArray()[0],
            OnnxDataType.Int64 or OnnxDataType.Int32 => ToInt64Array()[0],
            OnnxDataType.Double when HasRawData => MemoryMarshal.Cast<byte, double>(RawData.Span)[0],
            OnnxDataType.Double => DoubleData![0],
            _ => throw new InvalidDataException($"ONNX tensor '{Name}' of type {DataType} cannot be read as a number."),
        };
    }

    /// <summary>The float32 values as a managed tensor (one copy of the bytes).</summary>
    public FloatTensor ToFloatTensor()
    {
        EnsureInline();
        if (DataType != OnnxDataType.Float)
            throw new NotSupportedException(
                $"ONNX initializer '{Name}' has data type {DataType}; only FLOAT weights are supported.");
        var values = new float[ElementCount];
        if (HasRawData)
        {
            CheckRawLength();
            RawData.Span.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        else
        {
            var data = CollectionsMarshal.AsSpan(FloatData ?? []);
            if (data.Length != ElementCount)
                throw new InvalidDataException(
                    $"ONNX initializer '{Name}' {ShapeText} has {data.Length} float values.");
            data.CopyTo(values);
        }
        return new FloatTensor(Dims, values);
    }

    /// <summary>
    /// Copies the values into a new CPU TorchSharp tensor (float32 or int64), copying the bytes once.
    /// </summary>
    public Tensor ToTorch()
    {
        EnsureInline();
        ScalarType type = DataType switch
        {
            OnnxDataType.Float => ScalarType.Float32,
            OnnxDataType.Int64 => ScalarType.Int64,
            _ => throw new NotSupportedException(
                $"ONNX initializer '{Name}' has data type {DataType}; only FLOAT and INT64 are supported."),
        };
        var tensor = empty(Dims, type);
        try
        {
            Span<byte> destination = tensor.bytes;
            if (HasRawData)
            {
                CheckRawLength();
                RawData.Span.CopyTo(destination);
            }
            else if (DataType == OnnxDataType.Float)
            {
                var values = CollectionsMarshal.AsSpan(FloatData ?? []);
                if (values.Length != ElementCount)
                    throw new InvalidDataException(
                        $"ONNX initializer '{Name}' {ShapeText} has {values.Length} float values.");
                MemoryMarshal.AsBytes(values).CopyTo(destination);
            }
            else
            {
                var values = CollectionsMarshal.AsSpan(Int64Data ?? []);
                if (values.Length != ElementCount)
                    throw new InvalidDataException(
                        $"ONNX initializer '{Name}' {ShapeText} has {values.Length} int64 values.");
                MemoryMarshal.AsBytes(values).CopyTo(destination);
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }
}

/// <summary>One attribute of an ONNX node (only the kinds the importer reads are decoded).</summary>
internal sealed class OnnxAttribute
{
    public string Name { get; internal set; } = "";
    public float F { get; internal set; }
    public long I { get; internal set; }
    public byte[]? S { get; internal set; }
    public OnnxTensor? T { get; internal set; }
    public List<float> Floats { get; } = [];
    public List<long> Ints { get; } = [];
    public string? StringValue => S is null ? null : Encoding.UTF8.GetString(S);
}

/// <summary>An ONNX graph node.</summary>
internal sealed class OnnxNode
{
    public string Name { get; internal set; } = "";
    public string OpType { get; internal set; } = "";
    public string Domain { get; internal set; } = "";
    public List<string> Inputs { get; } = [];
    public List<string> Outputs { get; } = [];
    public Dictionary<string, OnnxAttribute> Attributes { get; } = new(StringComparer.Ordinal);

    public OnnxAttribute? Attribute(string name) => Attributes.TryGetValue(name, out var a) ? a : null;

    public override string ToString() =>
        $"{OpType} '{Name}' ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})";
}

/// <summary>An ONNX graph: nodes in topological order, initializers, input and output names.</summary>
internal sealed class OnnxGraph
{
    public string Name { get; internal set; } = "";
    public List<OnnxNode> Nodes { get; } = [];
    public Dictionary<string, OnnxTensor> Initializers { get; } = new(StringComparer.Ordinal);
    public List<string> Inputs { get; } = [];
    public List<string> Outputs { get; } = [];
}

/// <summary>An ONNX model read with <see cref="Load(Stream, string?)"/>.</summary>
internal sealed class OnnxModel
{
    public long IrVersion { get; internal set; }
    public string ProducerName { get; internal set; } = "";
    public string ProducerVersion { get; internal set; } = "";
    public Dictionary<string, long> OpsetImports { get; } = new(StringComparer.Ordinal);
    public OnnxGraph Graph { get; internal set; } = new();

    /// <summary>Reads an ONNX model file.</summary>
    public static OnnxModel Load(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1,
            System.IO.FileOptions.SequentialScan);
        return Load(stream, path);
    }

    /// <summary>Reads an ONNX model from <paramref name="stream"/> (from its current position to its end).</summary>
    public static OnnxModel Load(Stream stream, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        string source = sourceName ?? "stream";
        byte[] buffer;
        int length;
        if (stream.CanSeek)
        {
            long remaining = stream.Length - stream.Position;
            if (remaining > Array.MaxLength)
                throw new NotSupportedException(
                    $"ONNX model '{source}' is {remaining} bytes; models over 2 GB (external data) are not supported.");
            buffer = GC.AllocateUninitializedArray<byte>((int)remaining);
            stream.ReadExactly(buffer);
            length = buffer.Length;
        }
        else
        {
            var copy = new MemoryStream();
            stream.CopyTo(copy);
            buffer = copy.GetBuffer();
            length = (int)copy.Length;
        }
        return Parse(buffer, length, source);
    }

    /// <summary>Parses a serialized ModelProto held in <paramref name="buffer"/>[0..length).</summary>
    public static OnnxModel Parse(byte[] buffer, int length, string source = "buffer")
    {
        if (length == 0) throw new InvalidDataException($"ONNX model '{source}' is empty.");
        var model = new OnnxModel();
        try
        {
            var input = new CodedInputStream(buffer, 0, length);
            new ModelWalker(model, new WalkContext(buffer)).MergeFrom(input);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"'{source}' is not a valid ONNX model: {e.Message}", e);
        }
        if (model.Graph.Nodes.Count == 0 && model.Graph.Initializers.Count == 0)
            throw new InvalidDataException($"'{source}' is not a valid ONNX model: it has no graph.");
        return model;
    }

    // ---- Walkers -----------------------------------------------------------------------------------------------

    private sealed record WalkContext(byte[] Buffer);

    private const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;

    private static int Field(uint tag) => WireFormat.GetTagFieldNumber(tag);
    private static int Wire(uint tag) => (int)WireFormat.GetTagWireType(tag);

    /// <summary>
    /// Base of the hand walkers: CodedInputStream.ReadMessage pushes the length limit and calls MergeFrom.
    /// </summary>
    private abstract class Walker : IMessage
    {
        public abstract void MergeFrom(CodedInputStream input);
        public void WriteTo(CodedOutputStream output) => throw new NotSupportedException("ONNX walkers only read.");
        public int CalculateSize() => throw new NotSupportedException("ONNX walkers only read.");
        public MessageDescriptor Descriptor => throw new NotSupportedException("ONNX walkers have no descriptor.");
    }

    // Repeated numeric fields: packed (one length-delimited run of values) or one value per tag.
    private static void ReadPacked(CodedInputStream input, Action<CodedInputStream> readOne)
    {
        int length = input.ReadLength();
        long end = input.Position + length;
        while (input.Position < end) readOne(input);
        if (input.Position != end) throw new InvalidDataException("Malformed packed field in ONNX model.");
    }

    private static void ReadInt64s(CodedInputStream input, uint tag, List<long> into)
    {
        if (Wire(tag) == LengthDelimited) ReadPacked(input, i => into.Add(i.ReadInt64()));
        else into.Add(input.ReadInt64());
    }

    private static void ReadInt32s(CodedInputStream input, uint tag, List<int> into)
    {
        if (Wire(tag) == LengthDelimited) ReadPacked(input, i => into.Add(i.ReadInt32()));
        else into.Add(input.ReadInt32());
    }

    private static void ReadFloats(CodedInputStream input, uint tag, List<float> into)
    {
        if (Wire(tag) == LengthDelimited) ReadPacked(input, i => into.Add(i.ReadFloat()));
        else into.Add(input.ReadFloat());
    }

    private static void ReadDoubles(CodedInputStream input, uint tag, List<double> into)
    {
        if (Wire(tag) == LengthDelimited) ReadPacked(input, i => into.Add(i.ReadDouble()));
        else into.Add(input.ReadDouble());
    }

    private sealed class ModelWalker(OnnxModel model, WalkContext context) : Walker
    {
        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (Field(tag))
                {
                    case 1 when Wire(tag) == Varint: model.IrVersion = input.ReadInt64(); break;
                    case 2 when Wire(tag) == LengthDelimited: model.ProducerName = input.ReadString(); break;
                    case 3 when Wire(tag) == LengthDelimited: model.ProducerVersion = input.ReadString(); break;
                    case 7 when Wire(tag) == LengthDelimited:
                        input.ReadMessage(new GraphWalker(model.Graph, context));
                        break;
                    case 8 when Wire(tag) == LengthDelimited:
                        var opset = new OpsetWalker();
                        input.ReadMessage(opset);
                        model.OpsetImports[opset.Domain] = opset.Version;
                        break;
                    default: input.SkipLastField(); break;
                }
            }
        }
    }

    private sealed class OpsetWalker : Walker
    {
        public string Domain = "";
        public long Version;

        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (Field(tag))
                {
                    case 1 when Wire(tag) == LengthDelimited: Domain = input.ReadString(); break;
                    case 2 when Wire(tag) == Varint: Version = input.ReadInt64(); break;
                    default: input.SkipLastField(); break;
                }
            }
        }
    }

    private sealed class GraphWalker(OnnxGraph graph, WalkContext context) : Walker
    {
        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (Wire(tag) != LengthDelimited) { input.SkipLastField(); continue; }
                switch (Field(tag))
                {
                    case 1:
                        var node = new OnnxNode();
                        input.ReadMessage(new NodeWalker(node, context));
                        graph.Nodes.Add(node);
                        break;
                    case 2: graph.Name = input.ReadString(); break;
                    case 5:
                        var tensor = new OnnxTensor();
                        input.ReadMessage(new TensorWalker(tensor, context));
                        graph.Initializers[tensor.Name] = tensor;
                        break;
                    case 11: graph.Inputs.Add(ReadValueInfoName(input)); break;
                    case 12: graph.Outputs.Add(ReadValueInfoName(input)); break;
                    default: input.SkipLastField(); break;
                }
            }
        }

        private static string ReadValueInfoName(CodedInputStream input)
        {
            var walker = new ValueInfoWalker();
            input.ReadMessage(walker);
            return walker.Name;
        }
    }

    private sealed class ValueInfoWalker : Walker
    {
        public string Name = "";

        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (Field(tag) == 1 && Wire(tag) == LengthDelimited) Name = input.ReadString();
                else input.SkipLastField();
            }
        }
    }

    private sealed class NodeWalker(OnnxNode node, WalkContext context) : Walker
    {
        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (Wire(tag) != LengthDelimited) { input.SkipLastField(); continue; }
                switch (Field(tag))
                {
                    case 1: node.Inputs.Add(input.ReadString()); break;
                    case 2: node.Outputs.Add(input.ReadString()); break;
                    case 3: node.Name = input.ReadString(); break;
                    case 4: node.OpType = input.ReadString(); break;
                    case 5:
                        var attribute = new OnnxAttribute();
                        input.ReadMessage(new AttributeWalker(attribute, context));
                        node.Attributes[attribute.Name] = attribute;
                        break;
                    case 7: node.Domain = input.ReadString(); break;
                    default: input.SkipLastField(); break;
                }
            }
        }
    }

    private sealed class AttributeWalker(OnnxAttribute attribute, WalkContext context) : Walker
    {
        public override void MergeFrom(CodedInputStream input)
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (Field(tag))
                {
                    case 1 when Wire(tag) == LengthDelimited: attribute.Name = input.ReadString(); break;
                    case 2 when Wire(tag) == Fixed32: attribute.F = input.ReadFloat(); break;
                    case 3 when Wire(tag) == Varint: attribute.I = input.ReadInt64(); break;
                    case 4 when Wire(tag) == LengthDelimited: attribute.S = input.ReadBytes().ToByteArray(); break;
                    case 5 when Wire(tag) == LengthDelimited:
                        var tensor = new OnnxTensor();
                        input.ReadMessage(new TensorWalker(tensor, context));
                        attribute.T = tensor;
                        break;
                    case 7 when Wire(tag) is LengthDelimited or Fixed32:
                        ReadFloats(input, tag, attribute.Floats);
                        break;
                    case 8 when Wire(tag) is LengthDelimited or Varint: ReadInt64s(input, tag, attribute.Ints); break;
                    default: input.SkipLastField(); break;
                }
            }
        }
    }

    private sealed class TensorWalker(OnnxTensor tensor, WalkContext context) : Walker
    {
        public override void MergeFrom(CodedInputStream input)
        {
            var dims = new List<long>();
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                int wire = Wire(tag);
                switch (Field(tag))
                {
                    case 1 when wire is LengthDelimited or Varint: ReadInt64s(input, tag, dims); break;
                    case 2 when wire == Varint: tensor.DataType = (OnnxDataType)input.ReadInt32(); break;
                    case 4 when wire is LengthDelimited or Fixed32:
                        ReadFloats(input, tag, tensor.FloatData ??= []);
                        break;
                    case 5 when wire is LengthDelimited or Varint:
                        ReadInt32s(input, tag, tensor.Int32Data ??= []);
                        break;
                    case 7 when wire is LengthDelimited or Varint:
                        ReadInt64s(input, tag, tensor.Int64Data ??= []);
                        break;
                    case 8 when wire == LengthDelimited: tensor.Name = input.ReadString(); break;
                    case 9 when wire == LengthDelimited:
                        tensor.RawData = SliceLengthDelimited(input);
                        tensor.HasRawData = true;
                        break;
                    case 10 when wire is LengthDelimited or Fixed64:
                        ReadDoubles(input, tag, tensor.DoubleData ??= []);
                        break;
                    case 13 when wire == LengthDelimited: tensor.IsExternal = true; input.SkipLastField(); break;
                    case 14 when wire == Varint: if (input.ReadInt32() == 1) tensor.IsExternal = true; break;
                    default: input.SkipLastField(); break;
                }
            }
            tensor.Dims = dims.ToArray();
        }

        /// <summary>
        /// Returns the payload of the bytes field whose tag was just read as a slice of the model buffer, without
        /// copying: the position is noted, the field skipped, and the length prefix decoded from the buffer.
        /// </summary>
        private ReadOnlyMemory<byte> SliceLengthDelimited(CodedInputStream input)
        {
            long start = input.Position;
            input.SkipLastField();
            long end = input.Position;
            byte[] buffer = context.Buffer;
            long length = 0;
            int shift = 0;
            long p = start;
            while (true)
            {
                if (p >= end || shift > 63) throw new InvalidDataException("Malformed length prefix in ONNX raw_data.");
                byte b = buffer[p++];
                length |= (long)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) break;
                shift += 7;
            }
            if (p + length != end) throw new InvalidDataException("Inconsistent raw_data length in ONNX tensor.");
            return new ReadOnlyMemory<byte>(buffer, (int)p, (int)length);
        }
    }
}
