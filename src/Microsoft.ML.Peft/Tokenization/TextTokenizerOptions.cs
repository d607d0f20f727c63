namespace Microsoft.ML.Peft.Tokenization;

/// <summary>
/// Settings of a <see cref="TextTokenizer"/> that are not part of the vocabulary files. They mirror the keys of
/// a Hugging Face <c>tokenizer_config.json</c>; a <see langword="null"/> value means "use the family default"
/// (or the value found in the checkpoint folder when loading one).
/// </summary>
public sealed class TextTokenizerOptions
{
    /// <summary>Default <see cref="ModelMaxLength"/> when a checkpoint does not state one.</summary>
    public const int DefaultModelMaxLength = 512;

    /// <summary>
    /// Lower-case the text before tokenization (<c>do_lower_case</c>). WordPiece default: <see langword="true"/>
    /// (as Hugging Face's BertTokenizer); byte-level BPE default: <see langword="false"/>.
    /// </summary>
    public bool? LowerCase { get; set; }

    /// <summary>
    /// Remove accents (Unicode non-spacing marks after NFD) (<c>strip_accents</c>). WordPiece only;
    /// default: same as <see cref="LowerCase"/>, as in Hugging Face.
    /// </summary>
    public bool? StripAccents { get; set; }

    /// <summary>
    /// Put spaces around CJK ideographs so each becomes its own word (<c>tokenize_chinese_chars</c>). WordPiece only;
    /// default <see langword="true"/>.
    /// </summary>
    public bool? TokenizeChineseChars { get; set; }

    /// <summary>
    /// Longest sequence, special tokens included, the model accepts (<c>model_max_length</c>); default
    /// <see cref="DefaultModelMaxLength"/>.
    /// </summary>
    public int? ModelMaxLength { get; set; }

    /// <summary>
    /// Classification / beginning-of-sequence token (<c>cls_token</c>); default <c>[CLS]</c> or <c>&lt;s&gt;</c>.
    /// </summary>
    public string? ClsToken { get; set; }

    /// <summary>
    /// Separator / end-of-sequence token (<c>sep_token</c>); default <c>[SEP]</c> or <c>&lt;/s&gt;</c>.
    /// </summary>
    public string? SepToken { get; set; }

    /// <summary>Padding token (<c>pad_token</c>); default <c>[PAD]</c> or <c>&lt;pad&gt;</c>.</summary>
    public string? PadToken { get; set; }

    /// <summary>Unknown token (<c>unk_token</c>); default <c>[UNK]</c> or <c>&lt;unk&gt;</c>.</summary>
    public string? UnknownToken { get; set; }

    /// <summary>
    /// Mask token (<c>mask_token</c>); default <c>[MASK]</c> or <c>&lt;mask&gt;</c> (ignored when absent from the
    /// vocabulary).
    /// </summary>
    public string? MaskToken { get; set; }

    /// <summary>A shallow copy.</summary>
    public TextTokenizerOptions Clone() => (TextTokenizerOptions)MemberwiseClone();

    /// <summary>
    /// Returns a copy of this instance where every non-null value of <paramref name="overrides"/> replaces the value
    /// here.
    /// </summary>
    internal TextTokenizerOptions OverriddenBy(TextTokenizerOptions? overrides)
    {
        TextTokenizerOptions r = Clone();
        if (overrides is null)
        {
            return r;
        }
        r.LowerCase = overrides.LowerCase ?? r.LowerCase;
        r.StripAccents = overrides.StripAccents ?? r.StripAccents;
        r.TokenizeChineseChars = overrides.TokenizeChineseChars ?? r.TokenizeChineseChars;
        r.ModelMaxLength = overrides.ModelMaxLength ?? r.ModelMaxLength;
        r.ClsToken = overrides.ClsToken ?? r.ClsToken;
        r.SepToken = overrides.SepToken ?? r.SepToken;
        r.PadToken = overrides.PadToken ?? r.PadToken;
        r.UnknownToken = overrides.UnknownToken ?? r.UnknownToken;
        r.MaskToken = overrides.MaskToken ?? r.MaskToken;
        return r;
    }
}
