using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.Peft.Runtime;

/// <summary>
/// Thrown when TorchSharp's native library cannot be loaded; the message names what is missing and the fix.
/// </summary>
public sealed class TorchNativeLibraryException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TorchNativeLibraryException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>Loads TorchSharp's native code once and turns loader failures into one actionable error.</summary>
public static class TorchRuntime
{
    /// <summary>The libstdc++ symbol version that TorchSharp 0.107's <c>libLibTorchSharp.so</c> needs.</summary>
    public const string RequiredGlibcxx = "GLIBCXX_3.4.32";

    private static readonly Lazy<Exception?> LoadFailure = new(TryLoad, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Makes sure TorchSharp's native library is loaded; throws <see cref="TorchNativeLibraryException"/> if it cannot
    /// be.
    /// </summary>
    public static void EnsureLoaded()
    {
        if (LoadFailure.Value is { } e) throw e;
    }

    private static Exception? TryLoad()
    {
        try
        {
            using var probe = torch.zeros(1);
            return null;
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException
            or InvalidOperationException)
        {
            return new TorchNativeLibraryException(Explain(e), e);
        }
    }

    internal static string Explain(Exception e)
    {
        if (OperatingSystem.IsLinux())
        {
            string? lib = FindLibStdCxx();
            bool hasSymbol = lib is not null && LibraryHasSymbolVersion(lib, RequiredGlibcxx);
            if (!hasSymbol)
                return $"TorchSharp's native library could not be loaded: it needs libstdc++ with {RequiredGlibcxx} " +
                       $"(GCC 13 or newer), but {(lib ?? "the system libstdc++.so.6")} does not provide it. " +
                       "On Debian 12 run 'eng/prereqs.sh' from the Microsoft.ML.Peft repository (as root), " +
                       "which installs libstdc++6 from Debian 13 pinned at low priority; " +
                       "Ubuntu 24.04+, Debian 13+ and Fedora 39+ need nothing. Original error: " + Innermost(e).Message;
        }
        return "TorchSharp's native library could not be loaded. Make sure the project references exactly one " +
               "TorchSharp backend package (TorchSharp-cpu, or TorchSharp-cuda-linux with " +
               "-p:PeftTorchBackend=cuda) for this platform " +
               $"({RuntimeInformation.RuntimeIdentifier}). Original error: " + Innermost(e).Message;
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    private static string? FindLibStdCxx()
    {
        foreach (var p in new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                                   "/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6",
                                   "/usr/lib/libstdc++.so.6" })
            if (File.Exists(p)) return p;
        return null;
    }

    internal static bool LibraryHasSymbolVersion(string path, string version)
    {
        var needle = System.Text.Encoding.ASCII.GetBytes(version + "\0");
        var bytes = File.ReadAllBytes(path);
        return bytes.AsSpan().IndexOf(needle) >= 0;
    }
}
