using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Microsoft.ML.Peft.BaseModels;

/// <summary>
/// Reads manifest resources straight out of an assembly file with <see cref="PEReader"/>, without loading the
/// assembly or running any of its code: the SentenceTransformers.* packages are only used as carriers of an ONNX
/// model and a vocabulary.
/// </summary>
internal static class EmbeddedResources
{
    /// <summary>Where one embedded resource lies inside its assembly file.</summary>
    internal sealed record Location(string AssemblyPath, string ResourceName, long Offset, long Length)
    {
        /// <summary>Opens a read-only stream over exactly the resource bytes.</summary>
        public Stream Open()
        {
            var file = new FileStream(AssemblyPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1,
                System.IO.FileOptions.SequentialScan);
            return new SubStream(file, Offset, Length);
        }

        /// <summary>Reads the whole resource into memory.</summary>
        public byte[] ReadAllBytes()
        {
            using var s = Open();
            var bytes = GC.AllocateUninitializedArray<byte>(checked((int)Length));
            s.ReadExactly(bytes);
            return bytes;
        }
    }

    /// <summary>
    /// Finds the assembly file <paramref name="assemblyName"/>.dll: next to the application
    /// (<see cref="AppContext.BaseDirectory"/>), then next to this library, then in the NuGet package folder
    /// (<c>$NUGET_PACKAGES</c> or <c>~/.nuget/packages</c>) for <paramref name="packageVersion"/>.
    /// </summary>
    public static string FindAssembly(string assemblyName, string packageVersion)
    {
        string file = assemblyName + ".dll";
        var candidates = new List<string>();
        void Add(string? dir) { if (!string.IsNullOrEmpty(dir)) candidates.Add(Path.Combine(dir, file)); }
        Add(AppContext.BaseDirectory);
        Add(Path.GetDirectoryName(typeof(EmbeddedResources).Assembly.Location));
        string? nugetRoot = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(nugetRoot))
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (!string.IsNullOrEmpty(home)) nugetRoot = Path.Combine(home, ".nuget", "packages");
        }
        if (!string.IsNullOrEmpty(nugetRoot))
            Add(Path.Combine(nugetRoot, assemblyName.ToLowerInvariant(), packageVersion, "lib", "netstandard2.1"));
        foreach (string candidate in candidates)
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        throw new FileNotFoundException(
            $"The embedded base model needs '{file}' (NuGet package {assemblyName} {packageVersion}), " +
            $"which was not found. Looked in: {string.Join("; ", candidates)}. " +
            "Reference the package from the application, or use BaseModel.FromOnnx with your own files.",
            file);
    }

    /// <summary>
    /// Locates the manifest resource <paramref name="resourceName"/> embedded in <paramref name="assemblyPath"/>.
    /// </summary>
    public static Location Find(string assemblyPath, string resourceName)
    {
        using var file = File.OpenRead(assemblyPath);
        using var pe = new PEReader(file);
        if (!pe.HasMetadata) throw new BadImageFormatException($"'{assemblyPath}' is not a .NET assembly.");
        var metadata = pe.GetMetadataReader();
        var names = new List<string>();
        foreach (var handle in metadata.ManifestResources)
        {
            var resource = metadata.GetManifestResource(handle);
            string name = metadata.GetString(resource.Name);
            names.Add(name);
            if (name != resourceName) continue;
            if (!resource.Implementation.IsNil)
                throw new BadImageFormatException(
                    $"Resource '{resourceName}' of '{assemblyPath}' is not embedded in that file.");
            var directory = pe.PEHeaders.CorHeader!.ResourcesDirectory;
            if (!pe.PEHeaders.TryGetDirectoryOffset(directory, out int resourcesStart))
                throw new BadImageFormatException($"'{assemblyPath}' has no readable resources section.");
            // Each embedded resource is a 4-byte little-endian length followed by the bytes.
            long at = resourcesStart + resource.Offset;
            file.Position = at;
            Span<byte> lengthBytes = stackalloc byte[4];
            file.ReadExactly(lengthBytes);
            long length = BitConverter.ToUInt32(lengthBytes);
            if (at + 4 + length > file.Length)
                throw new BadImageFormatException(
                    $"Resource '{resourceName}' of '{assemblyPath}' runs past the end of the file.");
            return new Location(assemblyPath, resourceName, at + 4, length);
        }
        throw new InvalidDataException(
            $"'{assemblyPath}' has no resource '{resourceName}'. It has: {string.Join(", ", names)}.");
    }

    /// <summary>A read-only window [offset, offset+length) over another seekable stream, which it owns.</summary>
    internal sealed class SubStream : Stream
    {
        private readonly Stream _inner;
        private readonly long _start;
        private readonly long _length;
        private long _position;

        public SubStream(Stream inner, long start, long length)
        {
            _inner = inner;
            _start = start;
            _length = length;
            _inner.Position = start;
        }

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => _length;

        public override long Position
        {
            get => _position;
            set
            {
                ArgumentOutOfRangeException.ThrowIfNegative(value);
                _position = value;
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            long left = _length - _position;
            if (left <= 0) return 0;
            if (buffer.Length > left) buffer = buffer[..(int)left];
            if (_inner.Position != _start + _position) _inner.Position = _start + _position;
            int n = _inner.Read(buffer);
            _position += n;
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin)
        {
            Position = origin switch
            {
                SeekOrigin.Begin => offset,
                SeekOrigin.Current => _position + offset,
                _ => _length + offset,
            };
            return _position;
        }

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) _inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
