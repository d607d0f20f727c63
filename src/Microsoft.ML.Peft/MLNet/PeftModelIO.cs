using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>Saving and loading ML.NET model files safely.</summary>
public static class PeftModelIO
{
    /// <summary>
    /// Saves <paramref name="model"/> like <c>mlContext.Model.Save</c>, atomically: it is written to a temporary file
    /// in the same folder, flushed to disk, then renamed over <paramref name="path"/>. If anything fails, the temporary
    /// file is deleted and whatever was at <paramref name="path"/> before is left untouched.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="model">The model to save.</param>
    /// <param name="inputSchema">The model's input schema (saved with it), or null.</param>
    /// <param name="path">Destination .zip path.</param>
    public static void SaveAtomic(MLContext mlContext, ITransformer model, DataViewSchema? inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string fullPath = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(fullPath)!;
        Directory.CreateDirectory(directory);
        string temp = Path.Combine(directory,
            $"{Path.GetFileNameWithoutExtension(fullPath)}.{Guid.NewGuid():N}.zip.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                mlContext.Model.Save(model, inputSchema, stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Loads a model saved by <see cref="SaveAtomic"/> or <c>mlContext.Model.Save</c>, turning the many ways a damaged
    /// file fails inside ML.NET into one <see cref="PeftModelFormatException"/> that names the file.
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="PeftModelFormatException">
    /// The file is truncated, corrupted or unreadable by this version.
    /// </exception>
    public static ITransformer Load(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = File.OpenRead(path);
        try
        {
            return mlContext.Model.Load(stream, out inputSchema);
        }
        catch (Exception ex) when (ex is not (OutOfMemoryException or UnauthorizedAccessException))
        {
            var root = ex;
            PeftModelFormatException? peft = ex as PeftModelFormatException;
            while (root.InnerException is not null)
            {
                root = root.InnerException;
                peft ??= root as PeftModelFormatException;
            }
            // ML.NET reads each entry's own header before any loader runs, and its errors name no entry: find it.
            string detail = peft?.Message ?? FindDamagedHeader(path) ?? NoLoader(root.Message) ?? root.Message;
            throw new PeftModelFormatException(
                $"Cannot load model '{path}': the file is truncated, corrupted or was saved by an incompatible " +
                $"version. {detail}", ex);
        }
    }

    /// <summary>
    /// ML.NET's "Couldn't load model: 'dir'" (no registered loader has the name in the entry's header) as a message
    /// naming the entry; null for other messages.
    /// </summary>
    private static string? NoLoader(string message)
    {
        const string Prefix = "Couldn't load model: '";
        if (!message.StartsWith(Prefix, StringComparison.Ordinal) || !message.EndsWith('\''))
            return null;
        string directory = message[Prefix.Length..^1];
        return $"{directory}/Model.key: no loaded assembly registers the loader its header names " +
               "(the header is damaged, or the assembly that wrote it is not loaded).";
    }

    /// <summary>
    /// The first <c>Model.key</c> whose ML.NET header does not read, with the reason; null when every one reads (or
    /// the zip itself does not open).
    /// </summary>
    private static string? FindDamagedHeader(string path)
    {
        try
        {
            using var zip = ZipFile.OpenRead(path);
            foreach (var entry in zip.Entries.Where(e => e.Name == "Model.key")
                .OrderBy(e => e.FullName, StringComparer.Ordinal))
            {
                using var copy = new MemoryStream();
                using (var s = entry.Open())
                    s.CopyTo(copy);
                copy.Position = 0;
                using var reader = new BinaryReader(copy, Encoding.UTF8);
                try
                {
                    ModelHeader.BeginRead(out _, out _, out _, out string? assembly, reader);
                    // ML.NET loads the assembly the header names before it looks for the loader.
                    if (assembly is not null && !CanLoad(assembly))
                        return $"{entry.FullName}: names assembly '{assembly}', which does not load (damaged " +
                            $"header, or a missing assembly).";
                }
                catch (Exception ex) when (ex is FormatException or IOException or InvalidOperationException
                    or ArgumentException)
                {
                    return $"{entry.FullName}: its ML.NET header is damaged ({ex.Message}).";
                }
            }
        }
        catch (InvalidDataException)
        {
        }
        return null;
    }

    private static bool CanLoad(string assembly)
    {
        try
        {
            System.Reflection.Assembly.Load(new System.Reflection.AssemblyName(assembly));
            return true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or BadImageFormatException)
        {
            return false;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
