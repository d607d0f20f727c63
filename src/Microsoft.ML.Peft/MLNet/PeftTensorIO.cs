using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Writes and reads one TorchSharp tensor (any dtype, any shape) in a small self-describing binary form, for
/// <see cref="PeftModelWriter.WriteStream"/> / <see cref="PeftModelReader.ReadStream"/>.
/// </summary>
/// <remarks>
/// Internal: the library's stages store tensors as safetensors (<see cref="BaseModels.SafeTensors"/>); this simpler
/// form remains for single tensors in test stages, and should not become a second public tensor format.
/// </remarks>
internal static class PeftTensorIO
{
    private const int Magic = 0x4E455450; // "PTEN", little-endian
    private const int Version = 1;

    /// <summary>
    /// Writes dtype, shape and raw contents of <paramref name="tensor"/> (copied to CPU first if needed).
    /// </summary>
    public static void Write(BinaryWriter writer, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(tensor);
        using var scope = torch.NewDisposeScope();
        var cpu = tensor.detach().cpu().contiguous();
        writer.Write(Magic);
        writer.Write(Version);
        writer.Write((int)cpu.dtype);
        writer.Write(cpu.shape.Length);
        foreach (long dim in cpu.shape)
            writer.Write(dim);
        var bytes = cpu.bytes;
        writer.Write((long)bytes.Length);
        writer.Write(bytes);
    }

    /// <summary>Reads a tensor written by <see cref="Write"/>, onto <paramref name="device"/> (default: CPU).</summary>
    /// <exception cref="PeftModelFormatException">The data is not such a tensor, or is inconsistent.</exception>
    public static Tensor Read(BinaryReader reader, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (reader.ReadInt32() != Magic)
            throw new PeftModelFormatException("Not a serialized tensor (bad magic number).");
        int version = reader.ReadInt32();
        if (version != Version)
            throw new PeftModelFormatException($"Unsupported tensor format version {version}.");
        var dtype = (ScalarType)reader.ReadInt32();
        if (!Enum.IsDefined(dtype))
            throw new PeftModelFormatException($"Unknown tensor dtype {(int)dtype}.");
        int rank = reader.ReadInt32();
        if (rank is < 0 or > 16)
            throw new PeftModelFormatException($"Invalid tensor rank {rank}.");
        var shape = new long[rank];
        long elements = 1;
        for (int i = 0; i < rank; i++)
        {
            shape[i] = reader.ReadInt64();
            if (shape[i] < 0)
                throw new PeftModelFormatException($"Invalid tensor dimension {shape[i]}.");
            elements = checked(elements * shape[i]);
        }
        long byteCount = reader.ReadInt64();
        if (byteCount < 0 || byteCount > Array.MaxLength)
            throw new PeftModelFormatException($"Invalid tensor size {byteCount} bytes.");
        var data = reader.ReadBytes((int)byteCount);
        if (data.Length != byteCount)
            throw new PeftModelFormatException($"Tensor data truncated: {data.Length} of {byteCount} bytes.");

        var result = torch.empty(shape, dtype);
        if (result.ElementSize * elements != byteCount)
        {
            result.Dispose();
            throw new PeftModelFormatException(
                $"Tensor of shape [{string.Join(", ", shape)}] and dtype {dtype} cannot hold {byteCount} bytes.");
        }
        result.bytes = data;
        if (device is null || device.type == DeviceType.CPU)
            return result;
        using (result)
            return result.to(device);
    }
}
