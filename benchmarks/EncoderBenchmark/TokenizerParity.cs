// --tokenizer-parity: the in-graph tokenizer of OnnxExportOptions.IncludeTokenizer (ONNX Runtime Extensions'
// BertTokenizer, as TokenizerGraph configures it) against the library's WordPiece tokenizer, row by row, on text files.

using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Onnx;

namespace Microsoft.ML.Peft.Benchmarks;

internal static class TokenizerParity
{
    /// <summary>args: --tokenizer-parity [--max-length N] file.tsv... (Label, then text, tab-separated; header
    /// skipped).
    /// </summary>
    public static int Run(string[] args)
    {
        int maxLength = 512;
        var files = new List<string>();
        for (int i = 0; i < args.Length; i++)
            if (args[i] == "--max-length")
                maxLength = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
            else if (args[i] != "--tokenizer-parity") files.Add(args[i]);
        var tokenizer = BaseModel.MiniLM().CreateTokenizer();
        var b = new OnnxGraphBuilder();
        var (ids, _, _) = TokenizerGraph.Emit(b, tokenizer, maxLength);
        b.AddOutput(ids, "input_ids", global::Onnx.TensorProto.Types.DataType.Int64, "batch", "sequence");
        using var options = new SessionOptions();
        options.RegisterOrtExtensions();
        using var session =
            new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(b.ToModel([])), options);
        int total = 0, same = 0;
        foreach (var file in files)
            foreach (var line in File.ReadLines(file).Skip(1))
            {
                string text = line.Split('\t')[1];
                var ours = tokenizer.EncodeSingle(text, maxLength).InputIds.Select(i => (long)i);
                var input = new DenseTensor<string>(new[] { text }, [1]);
                using var r = session.Run([NamedOnnxValue.CreateFromTensor(TokenizerGraph.TextInput, input)]);
                var theirs = r[0].AsEnumerable<long>().Where(id => id != tokenizer.PadTokenId);
                total++;
                if (ours.SequenceEqual(theirs)) same++;
                else if (total - same <= 3) Console.WriteLine($"differs: {text}");
            }
        Console.WriteLine($"MiniLM WordPiece, max length {maxLength}: identical ids on {same} of {total} rows " +
            $"({string.Join(", ", files.Select(Path.GetFileName))}).");
        return same == total ? 0 : 1;
    }
}
