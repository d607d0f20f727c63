namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// Identifies a <see cref="PeftTransformerBase"/> subclass inside ML.NET model files, and versions its format.
/// ML.NET finds the loader of a saved transformer by <see cref="LoaderSignature"/>, among the loadable classes that
/// assemblies register with <c>[assembly: LoadableClass(...)]</c>.
/// </summary>
/// <remarks>
/// Versions follow ML.NET's scheme: <see cref="FormatVersion"/> is the format this code writes;
/// <see cref="MinimumReaderVersion"/> the oldest code version able to read it; <see cref="OldestReadableVersion"/>
/// the oldest format this code reads. Conventionally 0x00010001, 0x00010002, ...
/// </remarks>
internal sealed class PeftModelSignature
{
    /// <summary>Creates a signature.</summary>
    /// <param name="loaderSignature">
    /// Name the loadable class is registered under; 1 to 24 ASCII characters, unique.
    /// </param>
    /// <param name="modelSignature">
    /// Exactly 8 ASCII characters stored in (and checked against) each saved model header.
    /// </param>
    /// <param name="formatVersion">Format version this code writes.</param>
    /// <param name="minimumReaderVersion">
    /// Oldest reader version that can read what this code writes (default: <paramref name="formatVersion"/>).
    /// </param>
    /// <param name="oldestReadableVersion">
    /// Oldest format version this code can read (default: <paramref name="formatVersion"/>).
    /// </param>
    public PeftModelSignature(string loaderSignature, string modelSignature, uint formatVersion = 0x00010001,
        uint? minimumReaderVersion = null, uint? oldestReadableVersion = null)
    {
        ArgumentNullException.ThrowIfNull(loaderSignature);
        ArgumentNullException.ThrowIfNull(modelSignature);
        if (loaderSignature.Length is < 1 or > 24 || !loaderSignature.All(char.IsAsciiLetterOrDigit))
            throw new ArgumentException("A loader signature has 1 to 24 ASCII letters or digits.",
                nameof(loaderSignature));
        if (modelSignature.Length != 8 || !modelSignature.All(c => c is > ' ' and < (char)127))
            throw new ArgumentException("A model signature has exactly 8 printable ASCII characters.",
                nameof(modelSignature));
        LoaderSignature = loaderSignature;
        ModelSignature = modelSignature;
        FormatVersion = formatVersion;
        MinimumReaderVersion = minimumReaderVersion ?? formatVersion;
        OldestReadableVersion = oldestReadableVersion ?? formatVersion;
        if (MinimumReaderVersion > FormatVersion || OldestReadableVersion > FormatVersion)
            throw new ArgumentException("Reader versions cannot be newer than the format version.");
    }

    /// <summary>Name the loadable class is registered under.</summary>
    public string LoaderSignature { get; }

    /// <summary>8-character signature stored in each saved model header.</summary>
    public string ModelSignature { get; }

    /// <summary>Format version this code writes.</summary>
    public uint FormatVersion { get; }

    /// <summary>Oldest reader version that can read what this code writes.</summary>
    public uint MinimumReaderVersion { get; }

    /// <summary>Oldest format version this code can read.</summary>
    public uint OldestReadableVersion { get; }

    /// <summary>ML.NET's version record; the loader lives in <paramref name="loaderType"/>'s assembly.</summary>
    internal VersionInfo ToVersionInfo(Type loaderType) => new(
        modelSignature: ModelSignature,
        verWrittenCur: FormatVersion,
        verReadableCur: MinimumReaderVersion,
        verWeCanReadBack: OldestReadableVersion,
        loaderAssemblyName: loaderType.Assembly.FullName,
        loaderSignature: LoaderSignature);
}
