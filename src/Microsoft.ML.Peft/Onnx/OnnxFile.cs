using Google.Protobuf;
using Onnx;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>Writes ONNX models atomically: a file appears complete under its name or not at all.</summary>
internal static class OnnxFile
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> through a temporary file in the same folder, renamed
    /// over the target once complete; a failure leaves no file behind and any previous file untouched.
    /// </summary>
    public static void Write(ModelProto model, string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"Cannot export the ONNX model to '{full}': folder '{folder}' does "
                + "not exist.");
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                model.WriteTo(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new IOException($"Cannot export the ONNX model to '{full}': {e.Message}", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Writes <paramref name="model"/> to <paramref name="stream"/> (left open).</summary>
    public static void Write(ModelProto model, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite) throw new ArgumentException("The stream to export the ONNX model to is not writable.",
            nameof(stream));
        model.WriteTo(stream);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
