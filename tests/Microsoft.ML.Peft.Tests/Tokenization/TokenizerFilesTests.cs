using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.Tokenization;
using static Microsoft.ML.Peft.Tests.Tokenization.TokenizationTestData;

namespace Microsoft.ML.Peft.Tests.Tokenization;

[TestClass]
public sealed class TokenizerFilesTests
{
    private static readonly string[] Sentences =
    [
        "Hello world, it's unaffable!",
        "Café ÉCOLE naïve Über Zürich",
        "中文日本 the cat",
        "",
        "A somewhat longer sentence with numbers 12345 and symbols #@%&*() to make sure nothing changes.",
    ];

    [TestMethod]
    public void WordPiece_ExportThenLoad_GivesIdenticalIdsAndSettings()
    {
        var cased = TextTokenizer.FromWordPieceVocabulary(new MemoryStream(MiniLmVocab),
            new TextTokenizerOptions { LowerCase = false, ModelMaxLength = 256 });
        foreach (TextTokenizer original in new TextTokenizer[] { Bert, cased })
        {
            IReadOnlyDictionary<string, byte[]> files = original.ExportFiles();
            CollectionAssert.AreEquivalent(new[] { "vocab.txt", "tokenizer_config.json" }, files.Keys.ToArray());
            CollectionAssert.AreEqual(MiniLmVocab, files["vocab.txt"], "the vocabulary bytes are carried unchanged");

            TextTokenizer reloaded = TextTokenizer.Load(files, TextTokenizerKind.WordPiece);
            Assert.IsInstanceOfType<WordPieceTextTokenizer>(reloaded);
            Assert.AreEqual(original.LowerCase, reloaded.LowerCase);
            Assert.AreEqual(original.ModelMaxLength, reloaded.ModelMaxLength);
            Assert.AreEqual(original.VocabSize, reloaded.VocabSize);
            foreach (string s in Sentences)
            {
                CollectionAssert.AreEqual(original.EncodeSingle(s).InputIds, reloaded.EncodeSingle(s).InputIds, s);
                CollectionAssert.AreEqual(original.EncodePair(s, "the cat").TokenTypeIds,
                    reloaded.EncodePair(s, "the cat").TokenTypeIds, s);
            }
        }
        // The cased setting matters: "Hello" is not in the uncased vocabulary.
        Assert.AreEqual(VocabId("[UNK]"), cased.EncodeSingle("Hello").InputIds[1]);
        Assert.AreEqual(256, cased.ModelMaxLength);
        Assert.IsFalse(cased.LowerCase);
    }

    [TestMethod]
    public void FromPretrained_ReadsTokenizerConfig()
    {
        string dir = TempDir();
        File.WriteAllBytes(Path.Combine(dir, "vocab.txt"), MiniLmVocab);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            """
            { "do_lower_case": false, "model_max_length": 128, "unk_token": {"content": "[UNK]", "lstrip": false} }
            """);
        TextTokenizer t = TextTokenizer.FromPretrained(dir);
        Assert.AreEqual(TextTokenizerKind.WordPiece, t.Kind);
        Assert.IsFalse(t.LowerCase);
        Assert.AreEqual(128, t.ModelMaxLength);
        Assert.AreEqual(128, t.EncodeSingle(string.Join(' ', Enumerable.Repeat("the", 500))).Length);

        // Hugging Face's "unknown length" marker (1e30) falls back to 512; overrides win over the file.
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            """{ "do_lower_case": true, "model_max_length": 1000000000000000019884624838656 }""");
        TextTokenizer u = TextTokenizer.FromPretrained(dir);
        Assert.AreEqual((true, 512), (u.LowerCase, u.ModelMaxLength));
        TextTokenizer v = TextTokenizer.FromPretrained(dir, new TextTokenizerOptions { ModelMaxLength = 64 });
        Assert.AreEqual(64, v.ModelMaxLength);
        Directory.Delete(dir, true);
    }

    [TestMethod]
    public void FromPretrained_TokenizerJsonOnly_GivesTheSameIdsAsVocabTxt()
    {
        string[] lines = Encoding.UTF8.GetString(MiniLmVocab).Split('\n').Select(l => l.TrimEnd('\r'))
            .Where(l => l.Length > 0).ToArray();
        var vocab = new JsonObject();
        for (int i = 0; i < lines.Length; i++)
        {
            vocab[lines[i]] = i;
        }
        var root = new JsonObject
        {
            ["normalizer"] = new JsonObject { ["type"] = "BertNormalizer", ["lowercase"] = true,
                ["strip_accents"] = null, ["handle_chinese_chars"] = true },
            ["model"] = new JsonObject { ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["vocab"] = vocab },
        };
        string dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        TextTokenizer t = TextTokenizer.FromPretrained(dir);
        Assert.AreEqual(TextTokenizerKind.WordPiece, t.Kind);
        foreach (string s in Sentences)
        {
            CollectionAssert.AreEqual(Bert.EncodeSingle(s).InputIds, t.EncodeSingle(s).InputIds, s);
        }
        Directory.Delete(dir, true);
    }

    [TestMethod]
    public void MissingFiles_GiveErrorsNamingTheFile()
    {
        string dir = TempDir();
        var e1 = Assert.ThrowsExactly<FileNotFoundException>(() => TextTokenizer.FromPretrained(dir));
        StringAssert.Contains(e1.Message, "vocab.txt");
        StringAssert.Contains(e1.Message, dir);

        File.WriteAllText(Path.Combine(dir, "vocab.json"), """{"<s>": 0}""");
        var e2 = Assert.ThrowsExactly<FileNotFoundException>(() => TextTokenizer.FromPretrained(dir));
        StringAssert.Contains(e2.Message, "merges.txt");
        Assert.AreEqual("merges.txt", e2.FileName);

        var e3 = Assert.ThrowsExactly<FileNotFoundException>(() =>
            TextTokenizer.Load(new Dictionary<string, byte[]> { ["tokenizer_config.json"] = "{}"u8.ToArray() },
                TextTokenizerKind.WordPiece));
        StringAssert.Contains(e3.Message, "vocab.txt");
        var e4 = Assert.ThrowsExactly<FileNotFoundException>(() =>
            TextTokenizer.Load(new Dictionary<string, byte[]> { ["merges.txt"] = "#version: 0.2\n"u8.ToArray() },
                TextTokenizerKind.ByteLevelBpe));
        StringAssert.Contains(e4.Message, "vocab.json");

        Assert.ThrowsExactly<DirectoryNotFoundException>(() => TextTokenizer.FromPretrained(Path.Combine(dir, "nope")));
        var e5 = Assert.ThrowsExactly<InvalidDataException>(() =>
            TextTokenizer.FromWordPieceVocabulary(new MemoryStream("a\nb\n[PAD]\n"u8.ToArray())));
        StringAssert.Contains(e5.Message, "[CLS]");
        Directory.Delete(dir, true);
    }

    [TestMethod]
    public void ManifestResourceReader_ListsAndReadsResources()
    {
        string path = ManifestResourceReader.FindAssemblyFile(ManifestResourceReader.MiniLmAssemblyFileName)!;
        Assert.IsNotNull(path);
        CollectionAssert.Contains(ManifestResourceReader.List(path).ToArray(),
            ManifestResourceReader.MiniLmVocabResource);
        StringAssert.StartsWith(Encoding.UTF8.GetString(MiniLmVocab, 0, 5), "[PAD]");
        Assert.ThrowsExactly<FileNotFoundException>(() => ManifestResourceReader.Read(path, "no.such.resource"));
    }
}
