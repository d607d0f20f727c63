using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods.BitFit;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Methods.Prefix;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.Onnx;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// What transformers or peft would compute differently is refused with an error naming the option or method, and a
/// refused or failed save leaves no folder (or the old one untouched).
/// </summary>
[TestClass]
public sealed class HuggingFaceExportRefusalTests
{
    private static string _root = "";
    private static BaseModel _base = null!;

    [ClassInitialize]
    public static void Init(TestContext _)
    {
        _root = HfKit.NewFolder("refusal");
        _base = HfKit.TinyBase(_root);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_root, recursive: true);

    private static void AssertNoLeftovers()
    {
        var leftovers = Directory.GetDirectories(_root, ".*");
        Assert.AreEqual(0, leftovers.Length, string.Join(", ", leftovers));
    }

    [TestMethod]
    public void PrefixTuningIsRefusedAndWritesNothing()
    {
        var (stage, _) = HfKit.Classifier(new MLContext(seed: 1), new PrefixTuningConfig { NumVirtualTokens = 2 },
            _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "prefix");
            var e = Assert.ThrowsExactly<NotSupportedException>(() => stage.SavePretrained(folder));
            StringAssert.Contains(e.Message, "PREFIX_TUNING");
            Assert.IsFalse(Directory.Exists(folder));
            AssertNoLeftovers();
        }
    }

    [TestMethod]
    public void MethodWithoutPeftCounterpartPointsToTheMergedExport()
    {
        var (stage, data) = HfKit.Classifier(new MLContext(seed: 1), new BitFitConfig(), _base, epochs: 1);
        using (stage)
        {
            string folder = Path.Combine(_root, "bitfit");
            // An earlier save stays as it was when a later one is refused.
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "keep.txt"), "old");
            var e = Assert.ThrowsExactly<NotSupportedException>(() => stage.SavePretrained(folder));
            StringAssert.Contains(e.Message, "bitfit");
            StringAssert.Contains(e.Message, "SaveMergedPretrained");
            Assert.AreEqual("old", File.ReadAllText(Path.Combine(folder, "keep.txt")));
            // BitFit merges, so the transformers export works, replacing the folder whole.
            stage.SaveMergedPretrained(folder);
            Assert.IsFalse(File.Exists(Path.Combine(folder, "keep.txt")));
            using var imported = new MLContext().Peft().FromPretrained(folder, null, HfKit.Exact());
            HfKit.AssertClose(HfKit.Scores(stage, data), HfKit.Scores(imported, data));
            AssertNoLeftovers();
        }
    }

    [TestMethod]
    public void MeanPoolingIsRefusedNamingTheOption()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Stages.StageTestData.Negation(16, 1).Select(r => new Stages.PairRow
        {
            Label = r.Label == "positive" ? 1 : 0, Sentence1 = r.Text!,
        }));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        using var stage = ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            Epochs = 1, BatchSize = 16, MaxSequenceLength = 24, BaseModel = _base, Pooling = Pooling.Mean,
            Method = new LoraConfig { Rank = 2 }, Precision = PeftPrecision.Float32,
        }).Fit(keyed);
        string folder = Path.Combine(_root, "mean");
        var e = Assert.ThrowsExactly<NotSupportedException>(() => stage.SavePretrained(folder));
        StringAssert.Contains(e.Message, "Pooling");
        e = Assert.ThrowsExactly<NotSupportedException>(() => stage.SaveMergedPretrained(folder));
        StringAssert.Contains(e.Message, "Pooling");
        Assert.IsFalse(Directory.Exists(folder));
    }

    [TestMethod]
    public void BiEncodedPairsAreRefusedNamingTheOption()
    {
        var (stage, _) = OnnxParityKit.Classifier(new MLContext(seed: 1), new LoraConfig { Rank = 2 }, _base,
            PairEncoding.BiEncoder, pair: true, epochs: 1);
        using (stage)
        {
            var e = Assert.ThrowsExactly<NotSupportedException>(() =>
                stage.SavePretrained(Path.Combine(_root, "biencoder")));
            StringAssert.Contains(e.Message, "PairEncoding");
        }
    }
}
