using System.Runtime.InteropServices;

namespace Microsoft.ML.Peft.Runtime;

/// <summary>
/// Hands freed native memory back to the operating system between long pieces of work, such as a sweep's trials.
/// </summary>
/// <remarks>
/// libtorch frees its CPU tensors to glibc's <c>malloc</c>, which keeps freed blocks in its arenas for reuse. A trial
/// allocates and frees thousands of tensors of varied sizes; the holes they leave are too fragmented for the next trial
/// to reuse fully, so a sweep's resident memory grew by about half a gigabyte per MiniLM trial although every model was
/// disposed. <c>malloc_trim(0)</c> returns the free pages of every arena; a full collection first runs the finalizers
/// of tensors that were dropped without being disposed, so that their memory is free before the trim.
/// </remarks>
internal static partial class NativeHeap
{
    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>
    /// Collects garbage, runs pending finalizers and, on Linux with glibc, trims the native heap. Returns false where
    /// the trim is not available (another OS or C library), in which case only the collection ran.
    /// </summary>
    public static bool Release()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        if (_unavailable) return false;
        try
        {
            MallocTrim(0);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // musl and other C libraries without malloc_trim: nothing to trim with, and no reason to try again.
            _unavailable = true;
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
