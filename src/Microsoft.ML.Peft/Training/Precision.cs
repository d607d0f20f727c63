using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>Numeric precision of the encoder's forward and backward passes.</summary>
public enum PeftPrecision
{
    /// <summary>bfloat16 where the CPU has native support (AVX512-BF16 or AMX) or on CUDA; float32 elsewhere.</summary>
    Auto,
    /// <summary>float32 everywhere.</summary>
    Float32,
    /// <summary>
    /// bfloat16 weights and activations; trainable weights keep float32 master copies and the optimizer, loss and
    /// softmax run in float32.
    /// </summary>
    BFloat16,
}

/// <summary>Decides the compute type for a requested precision on this machine.</summary>
public static class PrecisionPolicy
{
    /// <summary>
    /// Set to <c>0</c> or <c>1</c> to override the CPU's bf16 capability check (e.g. to compare precisions).
    /// </summary>
    public const string OverrideVariable = "PEFT_BF16";

    /// <summary>
    /// True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), or <see cref="OverrideVariable"/> says
    /// so.
    /// </summary>
    public static bool CpuSupportsBFloat16()
    {
        switch (Environment.GetEnvironmentVariable(OverrideVariable))
        {
            case "0": return false;
            case "1": return true;
        }
        return CpuFlags.Value.Contains("avx512_bf16") || CpuFlags.Value.Contains("amx_bf16");
    }

    /// <summary>The tensor type for <paramref name="requested"/> on <paramref name="device"/>.</summary>
    public static ScalarType Resolve(PeftPrecision requested, Device device) => requested switch
    {
        PeftPrecision.Float32 => ScalarType.Float32,
        PeftPrecision.BFloat16 => ScalarType.BFloat16,
        _ => device.type == TorchSharp.DeviceType.CUDA || CpuSupportsBFloat16()
            ? ScalarType.BFloat16
            : ScalarType.Float32,
    };

    /// <summary>
    /// Whether <see cref="Resolve"/> would give bf16, decided from the CPU's flags without touching libtorch (a stage
    /// choosing its engine must not load libtorch just to ask).
    /// </summary>
    internal static bool ResolvesToBFloat16(PeftPrecision requested, bool gpuRequested) => requested switch
    {
        PeftPrecision.Float32 => false,
        PeftPrecision.BFloat16 => true,
        _ => gpuRequested || CpuSupportsBFloat16(),
    };

    private static readonly Lazy<HashSet<string>> CpuFlags = new(() =>
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return [];
            var flags = File.ReadLines("/proc/cpuinfo")
                .FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            return flags is null
                ? []
                : flags[(flags.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        }
        catch (IOException) { return []; }
    });
}
