namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// What a stage does with a text longer than its window (<see cref="PeftTextOptions.MaxSequenceLength"/> tokens,
/// special tokens included). See docs/long-texts.md.
/// </summary>
public enum LongTextStrategy
{
    /// <summary>Keep the first tokens that fit and drop the rest (Hugging Face's truncation). The default.</summary>
    Truncate,

    /// <summary>
    /// Keep the first <see cref="PeftTextOptions.HeadTokens"/> tokens and fill the rest of the window with the
    /// document's last tokens (Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?": head 128 + tail 382
    /// was best on IMDb). Costs nothing over <see cref="Truncate"/>: still one window per row.
    /// </summary>
    HeadAndTail,

    /// <summary>
    /// Cut the text into overlapping windows <see cref="PeftTextOptions.WindowStride"/> tokens apart (at most
    /// <see cref="PeftTextOptions.MaxWindowsPerDocument"/>). Training: every window is a training row with the
    /// document's label. Scoring and validation: the document's windows are scored and their scores pooled
    /// (<see cref="PeftTextOptions.WindowPooling"/>). Costs up to that many times the tokens of
    /// <see cref="Truncate"/>.
    /// </summary>
    SlidingWindow,
}

/// <summary>How the scores of a document's windows combine (<see cref="LongTextStrategy.SlidingWindow"/>).</summary>
public enum WindowPooling
{
    /// <summary>
    /// The mean of the windows' class probabilities (classification) or values (regression). The default.
    /// </summary>
    Mean,

    /// <summary>
    /// Classification: each class's largest probability over the windows, then divided by their sum so the pooled
    /// probabilities sum to 1. Regression: the largest value.
    /// </summary>
    Max,
}
