namespace Microsoft.ML.Peft.Modeling;

/// <summary>How a sentence pair reaches the head.</summary>
public enum PairEncoding
{
    /// <summary>
    /// <see cref="BiEncoder"/> when the base embeds sentences (sentence-transformers checkpoints
    /// such as the embedded MiniLM) and its tokenizer marks the second sentence (WordPiece token types); else
    /// <see cref="CrossEncoder"/>. Single-text stages ignore it.
    /// </summary>
    Auto,

    /// <summary>
    /// One sequence <c>[CLS] a [SEP] b [SEP]</c>: every layer attends across both sentences (BERT's pair setup; best
    /// with thousands of rows on a base pretrained that way).
    /// </summary>
    CrossEncoder,

    /// <summary>
    /// Each sentence encoded alone by the same encoder, then the head sees <c>[u, v, |u − v|, u ∗ v]</c>
    /// (Sentence-BERT, Reimers and Gurevych, 2019): the setup sentence-transformers bases were trained in, which keeps
    /// their notion of similarity and learns from few rows. Needs WordPiece token types to tell the sentences apart.
    /// </summary>
    BiEncoder,
}
