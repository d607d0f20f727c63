using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// <see cref="ScoringEngine.Auto"/>'s rule and the test for "ONNX Runtime cannot load". The rule comes from
/// <c>benchmarks/EncoderBenchmark --stage</c>, which scores the same stage with both engines in one run (figures in
/// <c>docs/onnx.md</c>).
/// </summary>
internal static class EngineChoice
{
    /// <summary>
    /// ONNX Runtime for stages that score in float32 (on every CPU measured, its MLAS kernels beat libtorch's float32);
    /// TorchSharp for stages that score in bf16, which only happens where the CPU computes bf16 natively.
    /// </summary>
    public static ScoringEngine Choose(bool scoresInBf16) =>
        scoresInBf16 ? ScoringEngine.TorchSharp : ScoringEngine.OnnxRuntime;

    /// <summary>Whether <paramref name="e"/> says ONNX Runtime's native library is missing or unusable.</summary>
    public static bool IsRuntimeMissing(Exception e) => e is DllNotFoundException or EntryPointNotFoundException
        or BadImageFormatException || (e is TypeInitializationException t && t.InnerException is { } inner
            && IsRuntimeMissing(inner));
}
