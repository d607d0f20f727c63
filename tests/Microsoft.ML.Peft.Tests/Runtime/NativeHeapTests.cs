using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.Peft.Runtime;

namespace Microsoft.ML.Peft.Tests.Runtime;

[TestClass]
public sealed class NativeHeapTests
{
    // under glibc's smallest mmap threshold, so the blocks come from the heap
    private const int BlockBytes = 64 * 1024;
    private const int Blocks = 4096;            // 256 MiB in all

    [TestMethod]
    public void ReleaseHandsFreedHeapMemoryInsideTheHeapBackToTheOperatingSystem()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.IsFalse(NativeHeap.Release(), "The trim exists only with glibc on Linux.");
            return;
        }
        // Many blocks, each written so that its pages are resident, then one more above them so that the freed run sits
        // inside the heap, where free() alone does not give it back (as a sweep's trials leave it).
        var blocks = new IntPtr[Blocks];
        for (int i = 0; i < Blocks; i++)
        {
            blocks[i] = Marshal.AllocHGlobal(BlockBytes);   // malloc on Unix
            for (int page = 0; page < BlockBytes; page += 4096) Marshal.WriteByte(blocks[i], page, 1);
        }
        IntPtr pin = Marshal.AllocHGlobal(BlockBytes);
        try
        {
            foreach (var b in blocks) Marshal.FreeHGlobal(b);
            long freedButResident = ResidentBytes();
            Assert.IsTrue(NativeHeap.Release(), "glibc's malloc_trim should be found on this Linux machine.");
            long afterRelease = ResidentBytes();
            Assert.IsTrue(freedButResident - afterRelease > Blocks * (long)BlockBytes / 2,
                $"Resident memory went from {freedButResident >> 20} MiB to {afterRelease >> 20} MiB; at least half " +
                    $"of the {Blocks * (long)BlockBytes >> 20} MiB freed should have gone back.");
        }
        finally
        {
            Marshal.FreeHGlobal(pin);
        }
    }

    [TestMethod]
    public void ReleaseRunsTheFinalizersOfDroppedObjects()
    {
        // A tensor dropped without Dispose frees its native memory in its finalizer; that must happen before the trim.
        var finalized = new StrongBox<bool>(false);
        DropOne(finalized);
        NativeHeap.Release();
        Assert.IsTrue(finalized.Value);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropOne(StrongBox<bool> flag) => _ = new Finalizable(flag);

    private sealed class Finalizable(StrongBox<bool> flag)
    {
        ~Finalizable() => flag.Value = true;
    }

    private static long ResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException("/proc/self/status has no VmRSS line.");
    }
}
