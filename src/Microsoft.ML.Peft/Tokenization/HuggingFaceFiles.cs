using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Peft.Tokenization;

/// <summary>Reading and writing the side files of a Hugging Face tokenizer folder.</summary>
internal static class HuggingFaceFiles
{
    internal const string TokenizerConfigFileName = "tokenizer_config.json";
    internal const string SpecialTokensMapFileName = "special_tokens_map.json";
    internal const string TokenizerJsonFileName = "tokenizer.json";

    /// <summary>Hugging Face writes 1e30 when the length is unknown; anything this large means "not stated".</summary>
    private const double MaxPlausibleModelLength = 1_000_000;

    /// <summary>
    /// Settings found in <c>tokenizer_config.json</c> (and <c>special_tokens_map.json</c>, lower priority); values
    /// absent from the files stay null. Special tokens may be strings or <c>{"content": ...}</c> objects.
    /// </summary>
    internal static TextTokenizerOptions ReadOptions(byte[]? tokenizerConfig, byte[]? specialTokensMap,
        out string? tokenizerClass)
    {
        var o = new TextTokenizerOptions();
        tokenizerClass = null;
        if (specialTokensMap is not null)
        {
            ApplySpecialTokens(o, ParseObject(specialTokensMap, SpecialTokensMapFileName));
        }
        if (tokenizerConfig is not null)
        {
            JsonObject cfg = ParseObject(tokenizerConfig, TokenizerConfigFileName);
            ApplySpecialTokens(o, cfg);
            o.LowerCase = GetBool(cfg, "do_lower_case") ?? o.LowerCase;
            o.StripAccents = GetBool(cfg, "strip_accents") ?? o.StripAccents;
            o.TokenizeChineseChars = GetBool(cfg, "tokenize_chinese_chars") ?? o.TokenizeChineseChars;
            if (cfg["model_max_length"] is JsonValue v && v.TryGetValue(out double len) && len >= 1
                && len < MaxPlausibleModelLength)
            {
                o.ModelMaxLength = (int)len;
            }
            tokenizerClass = cfg["tokenizer_class"] is JsonValue c && c.TryGetValue(out string? s) ? s : null;
        }
        return o;
    }

    /// <summary>
    /// The resolved settings as a <c>tokenizer_config.json</c> a Hugging Face tokenizer also understands.
    /// </summary>
    internal static byte[] WriteTokenizerConfig(TextTokenizerOptions o, TextTokenizerKind kind)
    {
        var cfg = new JsonObject
        {
            ["tokenizer_class"] = kind == TextTokenizerKind.WordPiece ? "BertTokenizer" : "RobertaTokenizer",
            ["do_lower_case"] = o.LowerCase ?? false,
        };
        if (kind == TextTokenizerKind.WordPiece)
        {
            cfg["strip_accents"] = o.StripAccents;
            cfg["tokenize_chinese_chars"] = o.TokenizeChineseChars ?? true;
        }
        cfg["model_max_length"] = o.ModelMaxLength ?? TextTokenizerOptions.DefaultModelMaxLength;
        cfg["cls_token"] = o.ClsToken;
        cfg["sep_token"] = o.SepToken;
        if (kind == TextTokenizerKind.ByteLevelBpe)
        {
            cfg["bos_token"] = o.ClsToken;
            cfg["eos_token"] = o.SepToken;
        }
        cfg["pad_token"] = o.PadToken;
        cfg["unk_token"] = o.UnknownToken;
        if (o.MaskToken is not null)
        {
            cfg["mask_token"] = o.MaskToken;
        }
        return Encoding.UTF8.GetBytes(cfg.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }));
    }

    /// <summary>
    /// Extracts the vocabulary of a <c>tokenizer.json</c> (the single-file "fast tokenizer" format) into the files of
    /// the classic format: <c>vocab.txt</c> for a WordPiece model, <c>vocab.json</c> + <c>merges.txt</c> for a BPE
    /// model, and fills settings the file states (BertNormalizer's lowercase / strip_accents / handle_chinese_chars).
    /// </summary>
    internal static (TextTokenizerKind Kind, Dictionary<string, byte[]> Files) ConvertTokenizerJson(
        byte[] tokenizerJson, TextTokenizerOptions options)
    {
        JsonObject root = ParseObject(tokenizerJson, TokenizerJsonFileName);
        JsonObject model = root["model"] as JsonObject
            ?? throw new InvalidDataException($"{TokenizerJsonFileName} has no \"model\" object.");
        string? type = model["type"] is JsonValue t && t.TryGetValue(out string? ts) ? ts : null;
        JsonObject vocab = model["vocab"] as JsonObject
            ?? throw new InvalidDataException(
                $"{TokenizerJsonFileName}: model.vocab is missing or is not a token → id object " +
                $"(model type '{type}').");

        ApplyNormalizer(root["normalizer"], options);
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (string.Equals(type, "WordPiece", StringComparison.Ordinal))
        {
            var tokens = new SortedDictionary<int, string>();
            foreach (KeyValuePair<string, JsonNode?> kv in vocab)
            {
                tokens[kv.Value!.GetValue<int>()] = kv.Key;
            }
            var sb = new StringBuilder();
            int expected = 0;
            foreach (KeyValuePair<int, string> kv in tokens)
            {
                if (kv.Key != expected++)
                {
                    throw new InvalidDataException(
                        $"{TokenizerJsonFileName}: WordPiece ids are not contiguous (no token has id {expected - 1}).");
                }
                sb.Append(kv.Value).Append('\n');
            }
            files[WordPieceTextTokenizer.VocabFileName] = Encoding.UTF8.GetBytes(sb.ToString());
            return (TextTokenizerKind.WordPiece, files);
        }
        if (string.Equals(type, "BPE", StringComparison.Ordinal))
        {
            files[ByteLevelBpeTextTokenizer.VocabFileName] = Encoding.UTF8.GetBytes(vocab.ToJsonString());
            var merges = new StringBuilder("#version: 0.2\n");
            if (model["merges"] is JsonArray arr)
            {
                foreach (JsonNode? m in arr)
                {
                    // Older files store "left right" strings, newer ones ["left", "right"] arrays.
                    string line = m is JsonArray pair && pair.Count == 2
                        ? pair[0]!.GetValue<string>() + " " + pair[1]!.GetValue<string>()
                        : m!.GetValue<string>();
                    merges.Append(line).Append('\n');
                }
            }
            files[ByteLevelBpeTextTokenizer.MergesFileName] = Encoding.UTF8.GetBytes(merges.ToString());
            return (TextTokenizerKind.ByteLevelBpe, files);
        }
        throw new NotSupportedException(
            $"{TokenizerJsonFileName}: model type '{type}' is not supported (WordPiece and byte-level BPE are).");
    }

    private static void ApplyNormalizer(JsonNode? normalizer, TextTokenizerOptions o)
    {
        if (normalizer is not JsonObject n)
        {
            return;
        }
        string? type = n["type"] is JsonValue t && t.TryGetValue(out string? s) ? s : null;
        if (type == "Sequence" && n["normalizers"] is JsonArray list)
        {
            foreach (JsonNode? child in list)
            {
                ApplyNormalizer(child, o);
            }
        }
        else if (type == "BertNormalizer")
        {
            o.LowerCase ??= GetBool(n, "lowercase");
            o.StripAccents ??= GetBool(n, "strip_accents");
            o.TokenizeChineseChars ??= GetBool(n, "handle_chinese_chars");
        }
        else if (type == "Lowercase")
        {
            o.LowerCase ??= true;
        }
    }

    private static void ApplySpecialTokens(TextTokenizerOptions o, JsonObject cfg)
    {
        o.ClsToken = GetToken(cfg, "cls_token") ?? GetToken(cfg, "bos_token") ?? o.ClsToken;
        o.SepToken = GetToken(cfg, "sep_token") ?? GetToken(cfg, "eos_token") ?? o.SepToken;
        o.PadToken = GetToken(cfg, "pad_token") ?? o.PadToken;
        o.UnknownToken = GetToken(cfg, "unk_token") ?? o.UnknownToken;
        o.MaskToken = GetToken(cfg, "mask_token") ?? o.MaskToken;
    }

    private static string? GetToken(JsonObject cfg, string key) => cfg[key] switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonObject obj when obj["content"] is JsonValue c && c.TryGetValue(out string? s) => s,
        _ => null,
    };

    private static bool? GetBool(JsonObject cfg, string key)
        => cfg[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;

    private static JsonObject ParseObject(byte[] bytes, string fileName)
    {
        try
        {
            return JsonNode.Parse(bytes, documentOptions: new JsonDocumentOptions
                {
                    AllowTrailingCommas = true,
                    CommentHandling = JsonCommentHandling.Skip,
                }) as JsonObject
                ?? throw new InvalidDataException($"{fileName} is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{fileName} is not valid JSON: {e.Message}", e);
        }
    }

}
