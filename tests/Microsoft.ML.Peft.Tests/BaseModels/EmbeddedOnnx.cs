using Microsoft.ML.Peft.BaseModels;

namespace Microsoft.ML.Peft.Tests.BaseModels;

/// <summary>Shared access to the ONNX models embedded in the SentenceTransformers.* packages.</summary>
internal static class EmbeddedOnnx
{
    public static EmbeddedResources.Location Model(string package)
    {
        string assembly = "SentenceTransformers." + package;
        string dll = EmbeddedResources.FindAssembly(assembly, BaseModel.EmbeddedPackageVersion);
        return EmbeddedResources.Find(dll, $"{assembly}.Resources.model.onnx");
    }

    public static EmbeddedResources.Location Vocab(string package)
    {
        string assembly = "SentenceTransformers." + package;
        string dll = EmbeddedResources.FindAssembly(assembly, BaseModel.EmbeddedPackageVersion);
        return EmbeddedResources.Find(dll, $"{assembly}.Resources.vocab.txt");
    }

    public static OnnxModel Parse(string package)
    {
        using var stream = Model(package).Open();
        return OnnxModel.Load(stream, package);
    }

    /// <summary>A temporary folder deleted on dispose.</summary>
    public sealed class TempFolder : IDisposable
    {
        public string Path { get; } =
            System.IO.Path.Combine(System.IO.Path.GetTempPath(), "peft-tests-" + Guid.NewGuid().ToString("N"));
        public TempFolder() => Directory.CreateDirectory(Path);
        public void Dispose()
        {
            try { Directory.Delete(Path, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
