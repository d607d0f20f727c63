using System.Runtime.InteropServices;

namespace Microsoft.ML.Peft.Benchmarks;

/// <summary>The CPU a benchmark ran on, from /proc/cpuinfo: every report names it, since machines differ.</summary>
internal static class CpuInfo
{
    /// <summary>The model name, or the process architecture where /proc/cpuinfo is absent.</summary>
    public static string Name() => Field("model name") ?? RuntimeInformation.ProcessArchitecture.ToString();

    /// <summary>The vendor id (e.g. <c>AuthenticAMD</c>), or null.</summary>
    public static string? Vendor() => Field("vendor_id");

    /// <summary>The flags that decide precision and kernels (AVX2, FMA, AVX-512, AVX512-BF16, AMX),
    /// space-separated.</summary>
    public static string RelevantFlags()
    {
        var all = (Field("flags") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return string.Join(' ', all.Where(f => f is "avx2" or "fma" or "avx512f" or "avx512_bf16" or "amx_bf16"));
    }

    private static string? Field(string key)
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith(key, StringComparison.Ordinal))
                        return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return null;
    }
}
