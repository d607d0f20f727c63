using Microsoft.ML.Peft.Tokenization;
using Onnx;

namespace Microsoft.ML.Peft.Onnx;

/// <summary>
/// WordPiece tokenization inside the graph (<see cref="MLNet.OnnxExportOptions.IncludeTokenizer"/>): a string input
/// <c>text</c> [batch] becomes <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c> [batch, longest row]
/// through ONNX Runtime Extensions' <c>BertTokenizer</c> (domain <c>ai.onnx.contrib</c>), one row per iteration of a
/// <c>Loop</c> since the operator tokenizes one text per call. Its ids equal this library's WordPiece tokenizer's on
/// the corpora measured (docs/onnx.md); a session must register the extensions (<c>RegisterOrtExtensions()</c>).
/// </summary>
internal static class TokenizerGraph
{
    /// <summary>The string input's name.</summary>
    public const string TextInput = "text";

    /// <summary>Adds the <c>text</c> input and the nodes that tokenize it; returns the three token tensors.</summary>
    /// <exception cref="NotSupportedException">The stage's tokenizer is not WordPiece.</exception>
    public static (string Ids, string Mask, string Types) Emit(OnnxGraphBuilder b, TextTokenizer tokenizer,
        int maxLength)
    {
        if (tokenizer.Kind != TextTokenizerKind.WordPiece)
            throw new NotSupportedException(
                $"IncludeTokenizer supports WordPiece tokenizers only; this stage's is {tokenizer.Kind}. Export " +
                "without it and tokenize with the files in the model's metadata.");
        var text = b.AddInput(TextInput, TensorProto.Types.DataType.String, "batch");
        var o = tokenizer.Options;
        string vocab = System.Text.Encoding.UTF8.GetString(tokenizer.ExportFiles()["vocab.txt"]);

        // The body: row i of text → ids and mask padded to maxLength (so the Loop can stack them).
        var body = new OnnxGraphBuilder("tokenize_row");
        var i = body.AddInput("i", TensorProto.Types.DataType.Int64);
        var condition = body.AddInput("condition", TensorProto.Types.DataType.Bool);
        var row = body.Node("Unsqueeze", [body.Node("Gather", [text, i], [("axis", 0L)]), body.Int64s(0)]);
        var tokens = body.CustomNode("ai.onnx.contrib", "BertTokenizer", [row], 3,
        [
            ("vocab_file", vocab), ("do_lower_case", o.LowerCase == true ? 1L : 0L),
            ("strip_accents", o.StripAccents == true ? 1L : 0L),
            ("tokenize_chinese_chars", o.TokenizeChineseChars == false ? 0L : 1L),
            ("unk_token", o.UnknownToken!), ("sep_token", o.SepToken!), ("pad_token", o.PadToken!),
            ("cls_token", o.ClsToken!), ("mask_token", o.MaskToken ?? o.UnknownToken!), ("max_length", (long)maxLength),
        ]);
        var missing = body.Node("Sub", [body.Int64s(maxLength), body.Node("Shape", [tokens[0]])]);
        var pads = body.Node("Concat", [body.Int64s(0), missing], [("axis", 0L)]);
        var ids = body.Node("Pad", [tokens[0], pads, body.Int64Scalar(tokenizer.PadTokenId)]);
        var mask = body.Node("Pad", [tokens[2], pads, body.Int64Scalar(0)]);
        var conditionOut = body.Node("Identity", [condition]);
        body.AddOutput(conditionOut, conditionOut, TensorProto.Types.DataType.Bool);
        body.AddOutput(ids, ids, TensorProto.Types.DataType.Int64, maxLength);
        body.AddOutput(mask, mask, TensorProto.Types.DataType.Int64, maxLength);
        b.ImportDomains(body);

        b.Scope = "tokenizer";
        var rows = b.Node("Squeeze", [b.Node("Shape", [text])]);
        var loop = b.Nodes("Loop", [rows, b.Bool(true)], 2, [("body", body.Graph)]);
        // Trim the columns no row uses, so the encoder runs on the longest row, not on maxLength.
        var longest = b.Node("ReduceMax", [b.Node("ReduceSum", [loop[1], b.Int64s(1)], [("keepdims", 0L)])],
            [("keepdims", 1L)]);
        var allIds = b.Node("Slice", [loop[0], b.Int64s(0), longest, b.Int64s(1)]);
        var allMask = b.Node("Slice", [loop[1], b.Int64s(0), longest, b.Int64s(1)]);
        return (allIds, allMask, b.Node("Mul", [allIds, b.Int64s(0)]));
    }

}
