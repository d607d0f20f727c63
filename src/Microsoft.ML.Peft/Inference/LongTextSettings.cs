using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// A stage's long-text options as given (null parameters keep their documented rules, applied per row), saved in its
/// header: what <see cref="RowEncoder"/> needs to cut a row into windows and <see cref="WindowPool"/> to combine them.
/// </summary>
internal sealed record LongTextSettings
{
    /// <summary>Today's behaviour, and what a model saved before these options loads as.</summary>
    public static readonly LongTextSettings Truncate = new();

    public LongTextStrategy Strategy { get; init; } = LongTextStrategy.Truncate;
    public int? HeadTokens { get; init; }
    public int? WindowStride { get; init; }
    public WindowPooling Pooling { get; init; } = WindowPooling.Mean;
    public int MaxWindowsPerDocument { get; init; } = 8;

    /// <summary>
    /// The options' settings (already validated) for a window of <paramref name="maxLength"/>, which a base with
    /// fewer positions may make shorter than the options' length: a head or stride beyond the room is cut to it, as
    /// windowing would cut it anyway, so the saved values pass the load-time checks.
    /// </summary>
    public static LongTextSettings From(PeftTextOptions o, int maxLength) => new()
    {
        Strategy = o.LongTextStrategy,
        HeadTokens = o.HeadTokens is { } h ? Math.Min(h, maxLength - 2) : null,
        WindowStride = o.WindowStride is { } w ? Math.Min(w, maxLength - 2) : null,
        Pooling = o.WindowPooling, MaxWindowsPerDocument = o.MaxWindowsPerDocument,
    };

    /// <summary>The first rule these settings break for a window of <paramref name="maxLength"/>, or null.</summary>
    public (string Field, string Message)? Problem(int maxLength)
    {
        int room = maxLength - 2;
        if (!Enum.IsDefined(Strategy)) return (nameof(Strategy), $"has unknown value {(int)Strategy}.");
        if (!Enum.IsDefined(Pooling)) return (nameof(Pooling), $"has unknown value {(int)Pooling}.");
        if (HeadTokens is < 0 || HeadTokens > room)
            return (nameof(HeadTokens), $"must be in [0, {room}], got {HeadTokens}.");
        if (WindowStride is < 1 || WindowStride > room)
            return (nameof(WindowStride), $"must be in [1, {room}], got {WindowStride}.");
        if (MaxWindowsPerDocument < 1)
            return (nameof(MaxWindowsPerDocument), $"must be at least 1, got {MaxWindowsPerDocument}.");
        return null;
    }
}
