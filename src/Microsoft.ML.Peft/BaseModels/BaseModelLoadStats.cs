namespace Microsoft.ML.Peft.BaseModels;

/// <summary>Timings of one base-model load step, for benchmarks and diagnostics.</summary>
public sealed record BaseModelLoadStats
{
    /// <summary>
    /// True when the converted weights came from the on-disk cache rather than from converting the source.
    /// </summary>
    public bool FromCache { get; init; }
    /// <summary>Time spent finding the SHA-256 of the source (remembered after the first time).</summary>
    public TimeSpan Hash { get; init; }
    /// <summary>Time spent reading, parsing and converting the source (zero when cached).</summary>
    public TimeSpan Import { get; init; }
    /// <summary>Time spent writing the cache entry.</summary>
    public TimeSpan CacheWrite { get; init; }
    /// <summary>Time spent reading (and checksumming) cached weights.</summary>
    public TimeSpan CacheRead { get; init; }
    /// <summary>Wall time of the whole step.</summary>
    public TimeSpan Total { get; init; }
    /// <summary>Why the cache was not used or was rebuilt, when that happened.</summary>
    public string? Note { get; init; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{(FromCache ? "cached" : "converted")} in {Total.TotalMilliseconds:F0} ms " +
        $"(hash {Hash.TotalMilliseconds:F0}, import {Import.TotalMilliseconds:F0}, " +
        $"cache write {CacheWrite.TotalMilliseconds:F0}, cache read {CacheRead.TotalMilliseconds:F0})" +
        $"{(Note is null ? "" : "; " + Note)}";
}
