using System.Globalization;

namespace Microsoft.ML.Peft.Runtime;

/// <summary>
/// This process's resident memory as Linux reports it (<c>/proc/self/status</c>, <c>/proc/meminfo</c>), and a way to
/// measure the peak of one piece of work: reset the kernel's high-water mark, run it, read the mark.
/// </summary>
internal static class ProcessMemory
{
    private const string Status = "/proc/self/status";

    /// <summary>Resident set size now (<c>VmRSS</c>), in bytes; null where /proc is absent.</summary>
    public static long? Resident() => ReadStatus("VmRSS:");

    // The highest peak read just before a reset: the kernel forgets it, the process's peak must not.
    private static long _peakBeforeResets;

    /// <summary>Peak resident set size of the process since it started, in bytes (the kernel's <c>VmHWM</c>, or the
    /// higher peak it had before <see cref="TryResetPeak"/>); null where /proc is absent.</summary>
    public static long? Peak() => ReadStatus("VmHWM:") is { } hwm ? Math.Max(hwm, Interlocked.Read(ref
        _peakBeforeResets)) : null;

    /// <summary>Peak resident set size since the last <see cref="TryResetPeak"/> (or the start), in bytes; null where
    /// /proc is absent.</summary>
    public static long? PeakSinceReset() => ReadStatus("VmHWM:");

    /// <summary>
    /// Sets the peak (<c>VmHWM</c>) back to the current resident size, by writing 5 to <c>/proc/self/clear_refs</c>
    /// (Linux 4.0 and later). False where that is not possible; peaks measured after it would then include earlier
    /// work.
    /// </summary>
    public static bool TryResetPeak()
    {
        try
        {
            if (ReadStatus("VmHWM:") is { } hwm)
                for (long seen = Interlocked.Read(ref _peakBeforeResets); hwm > seen;
                    seen = Interlocked.Read(ref _peakBeforeResets))
                    if (Interlocked.CompareExchange(ref _peakBeforeResets, hwm, seen) == seen) break;
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Memory the machine can give without swapping (<c>MemAvailable</c> of <c>/proc/meminfo</c>), in bytes; elsewhere
    /// what the .NET runtime reports as available (the machine's or the container's limit).
    /// </summary>
    public static long Available()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal) && ParseKiloBytes(line) is { } v)
                    return Math.Min(v, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>
    /// The bytes of a <c>/proc</c> size line such as <c>"VmHWM:\t12345678 kB"</c>; null when it has no number. Values
    /// of eight digits follow the tab with no space, so the line is split on any whitespace.
    /// </summary>
    internal static long? ParseKiloBytes(string line)
    {
        var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kb)
            ? kb * 1024 : null;
    }

    private static long? ReadStatus(string field)
    {
        if (!File.Exists(Status)) return null;
        foreach (var line in File.ReadLines(Status))
            if (line.StartsWith(field, StringComparison.Ordinal)) return ParseKiloBytes(line);
        return null;
    }
}
