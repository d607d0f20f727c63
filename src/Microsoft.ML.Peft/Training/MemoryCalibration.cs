using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Runtime;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// The memory budget's measurement: how much one forward and backward pass adds per row of the longest training row,
/// and how much whatever its rows, fitted from two passes (one row and three) on the model as it will train.
/// </summary>
internal static class MemoryCalibration
{
    private const int FewRows = 1, MoreRows = 3;

    /// <summary>
    /// Costs of a pass: per row of <paramref name="longest"/> tokens and fixed. <paramref name="pass"/> runs a forward
    /// and backward over that many copies of the longest row and leaves no gradient behind. Measured from the peak
    /// resident memory where Linux lets it be reset; otherwise estimated from the encoder's shape.
    /// </summary>
    /// <returns>The costs, the resident memory before the passes, and whether they were measured.</returns>
    public static (long PerRow, long Fixed, long Before, bool Measured) Run(Action<int> pass, EncoderConfig config,
        int longest, int elementBytes, bool checkpointing)
    {
        // Freed blocks kept by the allocator would hide a pass's growth: hand them back first.
        NativeHeap.Release();
        long? before = ProcessMemory.Resident();
        if (before is { } start && ProcessMemory.TryResetPeak())
        {
            pass(FewRows);
            long few = (ProcessMemory.PeakSinceReset() ?? start) - start;
            NativeHeap.Release();
            ProcessMemory.TryResetPeak();
            pass(MoreRows);
            long more = (ProcessMemory.PeakSinceReset() ?? start) - start;
            long perRow = Math.Max(0, (more - few) / (MoreRows - FewRows));
            return (perRow, Math.Max(0, few - perRow * FewRows), start, true);
        }
        long estimate = MemoryPlanner.EstimateBytesPerRow(config, longest, elementBytes, checkpointing);
        return (estimate, 0, before ?? 0, false);
    }
}
