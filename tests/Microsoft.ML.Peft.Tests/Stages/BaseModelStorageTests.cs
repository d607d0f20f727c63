using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>Non-embedded bases: stored in the zip by default, or referenced by path + SHA-256.</summary>
[TestClass]
public sealed class BaseModelStorageTests
{
    private static (MLContext Ml, ITransformer Model, IDataView Data) Train(BaseModel baseModel, bool store)
    {
        var ml = new MLContext(1);
        var data = StageTestData.Load(ml, StageTestData.Negation(48, 1));
        var model = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16,
                MaxSequenceLength = 16,
                BaseModel = baseModel, StoreBaseModelWeights = store, LearningRate = 1e-2,
            }))
            .Fit(data);
        return (ml, model, data);
    }

    [TestMethod]
    public void SelfContainedZipLoadsAfterTheBaseFileIsGone()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var (ml, model, data) =
            Train(BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")), store: true);
        string zip = Path.Combine(temp.Path, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, zip);
        var expected = RowFormatter.Format(model.Transform(data), ["Score"]);
        Directory.Delete(Path.Combine(temp.Path, "base"), true);
        Directory.Delete(Path.Combine(temp.Path, "cache"), true);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        CollectionAssert.AreEqual(expected, RowFormatter.Format(loaded.Transform(data), ["Score"]));
    }

    [TestMethod]
    public void ReferencedBaseIsCheckedOnLoad()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var (ml, model, data) =
            Train(BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")), store: false);
        string zip = Path.Combine(temp.Path, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, zip);
        var expected = RowFormatter.Format(model.Transform(data), ["Score"]);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        CollectionAssert.AreEqual(expected, RowFormatter.Format(loaded.Transform(data), ["Score"]));

        // A different file at the same path: the SHA-256 check must refuse it.
        new TinyOnnx { Seed = 99 }.WriteTo(Path.Combine(temp.Path, "base"));
        var mismatch = Assert.Throws<Exception>(() => new MLContext(2).Model.Load(zip, out _));
        StringAssert.Contains(Flatten(mismatch), "sha256");

        File.Delete(onnx);
        var gone = Assert.Throws<Exception>(() => new MLContext(2).Model.Load(zip, out _));
        StringAssert.Contains(Flatten(gone), onnx);
    }

    private static string Flatten(Exception e)
    {
        var parts = new List<string>();
        for (Exception? x = e; x is not null; x = x.InnerException) parts.Add(x.Message);
        return string.Join(" | ", parts);
    }
}
