namespace Microsoft.ML.Peft.MLNet;

/// <summary>Which runtime a trained stage scores with. Saved with the model; settable on a loaded stage.</summary>
public enum ScoringEngine
{
    /// <summary>
    /// ONNX Runtime where it scores faster than libtorch on this machine at the stage's precision, else TorchSharp;
    /// the rule, measured by <c>benchmarks/EncoderBenchmark --stage</c>, is in <c>docs/onnx.md</c>. If ONNX Runtime's
    /// native library cannot load, Auto scores with TorchSharp and logs why.
    /// </summary>
    Auto,

    /// <summary>libtorch through TorchSharp, in the stage's precision (bf16 where the CPU has it).</summary>
    TorchSharp,

    /// <summary>
    /// ONNX Runtime on the stage's graph built in memory (float32; merged methods merged, the others as extra nodes).
    /// A saved stage set to this loads and scores without loading libtorch. When ONNX Runtime cannot load, loading
    /// fails unless <c>FallbackToTorchSharp</c> is set, as ML.NET's <c>ApplyOnnxModel</c> does with
    /// <c>fallbackToCpu</c>.
    /// </summary>
    OnnxRuntime,
}
