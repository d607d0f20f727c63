using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// The windows a long document was cut into (<see cref="MLNet.LongTextStrategy.SlidingWindow"/>), carried by the
/// document's row (<see cref="TokenizedText.Document"/>) so that training, validation and scoring pass documents
/// around as rows and only the two ends look inside: <see cref="ForTraining"/> makes each window a training row, and
/// <see cref="BatchPlanner.ScoreInBatches"/> scores every window and pools each document's (<see cref="WindowPool"/>).
/// </summary>
internal sealed class DocumentWindows
{
    public DocumentWindows(TokenizedText[] windows, WindowPool pool)
    {
        if (windows.Length < 2) throw new ArgumentException("A document of windows has at least two.", nameof(windows));
        Windows = windows;
        Pool = pool;
    }

    /// <summary>The windows in document order; none of them carries a document itself.</summary>
    public TokenizedText[] Windows { get; }

    public WindowPool Pool { get; }

    /// <summary>A row standing for the whole document: the first window's tokens, with the windows attached.</summary>
    public static TokenizedText AsRow(TokenizedText[] windows, WindowPool pool)
    {
        if (windows.Length == 1) return windows[0];
        var first = windows[0];
        return new TokenizedText(first.InputIds, first.TokenTypeIds, first.FirstSegmentLength,
            first.SecondSegmentLength) { Document = new DocumentWindows(windows, pool) };
    }

    /// <summary>Training rows: every window of every document, each with its document's label.</summary>
    public static List<Example> ForTraining(IEnumerable<Example> documents)
    {
        var result = new List<Example>();
        foreach (var e in documents)
        {
            if (e.Row.Document is { } d) result.AddRange(d.Windows.Select(w => new Example(w, e.Label)));
            else result.Add(e);
        }
        return result;
    }

    /// <summary>
    /// Scores documents through <paramref name="scoreWindows"/> (which sees windows only) and pools each document's
    /// windows; rows without windows come back exactly as scored.
    /// </summary>
    public static float[][] Score(IReadOnlyList<TokenizedText> rows,
        Func<IReadOnlyList<TokenizedText>, float[][]> scoreWindows)
    {
        if (!rows.Any(r => r.Document is not null)) return scoreWindows(rows);
        var flat = new List<TokenizedText>(rows.Count);
        var firstWindow = new int[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            firstWindow[i] = flat.Count;
            if (rows[i].Document is { } d) flat.AddRange(d.Windows);
            else flat.Add(rows[i]);
        }
        var scored = scoreWindows(flat);
        var results = new float[rows.Count][];
        for (int i = 0; i < rows.Count; i++)
            results[i] = rows[i].Document is { } d
                ? d.Pool.Combine(scored.AsSpan(firstWindow[i], d.Windows.Length))
                : scored[firstWindow[i]];
        return results;
    }
}
