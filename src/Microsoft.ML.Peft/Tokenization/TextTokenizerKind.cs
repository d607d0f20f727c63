namespace Microsoft.ML.Peft.Tokenization;

/// <summary>The tokenization algorithm family of a <see cref="TextTokenizer"/>.</summary>
public enum TextTokenizerKind
{
    /// <summary>
    /// BERT-style WordPiece (BERT, MiniLM, DistilBERT, ...): files <c>vocab.txt</c> (+ optional
    /// <c>tokenizer_config.json</c>). Layout <c>[CLS] a [SEP]</c> / <c>[CLS] a [SEP] b [SEP]</c>; token type ids 0 then
    /// 1.
    /// </summary>
    WordPiece = 0,

    /// <summary>
    /// GPT-2/RoBERTa byte-level BPE: files <c>vocab.json</c> + <c>merges.txt</c> (+ optional
    /// <c>tokenizer_config.json</c>). Layout <c>&lt;s&gt; a &lt;/s&gt;</c> / <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b
    /// &lt;/s&gt;</c>; all token type ids 0.
    /// </summary>
    ByteLevelBpe = 1,
}
