namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Where the windows of a long text fall, in token offsets of its first text (special tokens not counted). Pure
/// arithmetic on lengths, so the layout can be checked by hand; <see cref="RowEncoder"/> turns it into rows.
/// </summary>
internal static class LongTextWindows
{
    /// <summary>Sun et al. (2019)'s head at 512 positions: 128 of the 510 tokens a window holds besides its
    /// specials.</summary>
    public const int SunHead = 128;

    /// <summary>The room Sun et al.'s head was chosen for (512 − [CLS] − [SEP]).</summary>
    public const int SunRoom = 510;

    /// <summary>
    /// The head length HeadAndTail keeps when its option is unset: Sun et al.'s 128/510 of <paramref name="room"/>,
    /// rounded half up (8 of 30, 32 of 126, 128 of 510).
    /// </summary>
    public static int DefaultHead(int room) => (int)(((long)room * SunHead * 2 + SunRoom) / (2L * SunRoom));

    /// <summary>
    /// HeadAndTail for a text of <paramref name="length"/> tokens longer than <paramref name="room"/>: the first
    /// <c>Head</c> tokens, then the tokens from <c>TailStart</c> to the end (<c>room − Head</c> of them).
    /// </summary>
    public static (int Head, int TailStart) HeadAndTail(int length, int room, int? headTokens)
    {
        int head = Math.Min(headTokens ?? DefaultHead(room), room);
        return (head, length - (room - head));
    }

    /// <summary>The stride SlidingWindow uses: the option, or half the room, and never more than the room.</summary>
    public static int Stride(int room, int? windowStride) => Math.Clamp(windowStride ?? room / 2, 1, room);

    /// <summary>
    /// SlidingWindow's window starts for a text of <paramref name="length"/> tokens, each window
    /// <paramref name="room"/> tokens long: 0, stride, 2·stride, … while a window ends before the text does,
    /// then one last window ending at the text's end (so every window is full and the end is always seen). With more
    /// than <paramref name="maxWindows"/> windows, windows i·(count − 1)/(maxWindows − 1) are kept, rounded half up:
    /// evenly spread, first and last included (one window: the first).
    /// </summary>
    public static int[] Starts(int length, int room, int stride, int maxWindows)
    {
        if (length <= room) return [0];
        int count = (length - room + stride - 1) / stride + 1;
        var all = new int[count];
        for (int k = 0; k < count - 1; k++) all[k] = k * stride;
        all[count - 1] = length - room;
        if (count <= maxWindows) return all;
        if (maxWindows == 1) return [0];
        var kept = new int[maxWindows];
        for (int i = 0; i < maxWindows; i++)
            kept[i] = all[(int)((2L * i * (count - 1) + (maxWindows - 1)) / (2L * (maxWindows - 1)))];
        return kept;
    }
}
