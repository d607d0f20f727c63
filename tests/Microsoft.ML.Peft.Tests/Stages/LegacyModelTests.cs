using Microsoft.ML.Data;
using Microsoft.ML;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>
/// A zip written by the library before the stage header had its SHA-256 (header format 1): a LoRA classifier on the
/// tiny ONNX base, float32, saved by commit e3a4d5b (TestData/format1-lora-tiny.zip, 13 KB). It must keep loading and
/// scoring as it did then, and its fields are still checked although nothing vouches for them.
/// </summary>
[TestClass]
public sealed class LegacyModelTests
{
    private static readonly string Zip = Path.Combine(AppContext.BaseDirectory, "testdata", "format1-lora-tiny.zip");

    private static readonly string[] Texts =
    [
        "They do not truly love this meal", "They do certainly hate this meal",
        "My friends do not genuinely dislike this game", "I do actually hate this book",
        "We do not really resent this hotel", "We do simply detest this book",
    ];

    // The scores that code printed for these texts when it saved the zip (class "0", class "1").
    private static readonly float[][] Expected =
    [
        [0.44056332f, 0.5594367f], [0.44335306f, 0.55664694f], [0.44169053f, 0.5583095f],
        [0.44335306f, 0.55664694f], [0.44056332f, 0.5594367f], [0.44335306f, 0.55664694f],
    ];

    private static IDataView Data(MLContext ml) =>
        ml.Data.LoadFromEnumerable(Texts.Select(t => new TextRow { Label = "0", Text = t }).ToList());

    [TestMethod]
    public void AFormatOneZipLoadsAndScoresAsWhenItWasSaved()
    {
        var ml = new MLContext(1);
        var model = ml.Model.Load(Zip, out _);
        var scores = model.Transform(Data(ml)).GetColumn<float[]>("Score").ToArray();
        Assert.HasCount(Expected.Length, scores);
        for (int i = 0; i < Expected.Length; i++)
            for (int c = 0; c < 2; c++)
                Assert.AreEqual(Expected[i][c], scores[i][c], 1e-5f, $"row {i}, class {c}");
    }

    [TestMethod]
    public void AFormatOneZipWithAnInvalidFieldFailsNamingIt()
    {
        var edited = ZipSurgery.Edit(File.ReadAllBytes(Zip), "TransformerChain/Transform_001/Model.key",
            "\"Pooling\":3", "\"Pooling\":0");
        string path = Path.Combine(Path.GetTempPath(), $"peft-legacy-{Guid.NewGuid():N}.zip");
        try
        {
            File.WriteAllBytes(path, edited);
            var ex = Assert.ThrowsExactly<PeftModelFormatException>(() =>
                PeftModelIO.Load(new MLContext(1), path, out _));
            StringAssert.Contains(ex.Message, "Transform_001/Model.key");
            StringAssert.Contains(ex.Message, "'Pooling'");
        }
        finally { File.Delete(path); }
    }
}
