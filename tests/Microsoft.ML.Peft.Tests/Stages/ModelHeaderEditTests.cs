using Microsoft.ML;
using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>
/// Edits to a stage's header that keep it parseable and every value valid (re-zipped with a valid CRC) used to load
/// silently and change scores or labels; now they fail naming the entry and the field.
/// </summary>
[TestClass]
public sealed class ModelHeaderEditTests
{
    private const string Q = "\\u0022"; // how the method JSON's quotes appear inside the options JSON

    public TestContext TestContext { get; set; } = null!;

    public static IEnumerable<object[]> Edits => new[]
    {
        new object[] { "\"MaxSequenceLength\":10", "\"MaxSequenceLength\":12", "MaxSequenceLength" },
        new object[] { $"{Q}Alpha{Q}:16", $"{Q}Alpha{Q}:36", "MethodJson.options.Alpha" },
        new object[] { "\"Pooling\":3", "\"Pooling\":1", "Pooling" },
        new object[] { "\"Values\":[\"0\",\"1\"]", "\"Values\":[\"0\",\"3\"]", "Labels.Values" },
    };

    [TestMethod]
    [DynamicData(nameof(Edits))]
    public void ValidButEditedField_FailsNamingEntryAndField(string from, string to, string field)
    {
        var model = ZipSurgery.Model;
        string entry = model.StageDirectory + "/Model.key";
        var zip = ZipSurgery.Edit(model.Zip, entry, from, to);

        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => LoadWithLibrary(zip));
        StringAssert.Contains(ex.Message, entry);
        StringAssert.Contains(ex.Message, $"'{field}' changed");
        TestContext.WriteLine(ex.Message);
    }

    [TestMethod]
    public void GarbledPoolingKey_FailsNamingTheField()
    {
        // One flipped bit turns the key into one the reader ignores: Pooling would fall back to its default.
        var model = ZipSurgery.Model;
        string entry = model.StageDirectory + "/Model.key";
        var zip = ZipSurgery.Edit(model.Zip, entry, "\"Pooling\":", "\"Poolhng\":");

        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => LoadWithLibrary(zip));
        StringAssert.Contains(ex.Message, entry);
        StringAssert.Contains(ex.Message, "'Pooling'");
        StringAssert.Contains(ex.Message, "'Poolhng'");
    }

    [TestMethod]
    public void MlNetModelLoad_CarriesTheStageErrorNamingEntryAndField()
    {
        var model = ZipSurgery.Model;
        string entry = model.StageDirectory + "/Model.key";
        var zip = ZipSurgery.Edit(model.Zip, entry, "\"Pooling\":3", "\"Pooling\":1");

        // ML.NET calls loaders by reflection, so its outer exception is its own; the stage's error is inside it,
        // and the text a user sees (ToString, as an unhandled exception prints) names the entry and the field.
        var raw = Assert.Throws<Exception>(() => ZipSurgery.Load(zip));
        var inner = ZipSurgery.Chain(raw).OfType<PeftModelFormatException>().Single();
        StringAssert.Contains(inner.Message, entry);
        StringAssert.Contains(inner.Message, "'Pooling' changed");
        StringAssert.Contains(raw.ToString(),
            $"{entry}: the stage header fails its SHA-256 check: field(s) 'Pooling' changed");
    }

    [TestMethod]
    public void MlNetModelLoad_DamagedMlNetHeader_LibraryLoaderNamesTheEntry()
    {
        var model = ZipSurgery.Model;
        string entry = model.StageDirectory + "/Model.key";
        var content = ZipSurgery.Entries(model.Zip)[entry];
        content[25] ^= 0x10; // FpModel, in ML.NET's own header: ML.NET rejects it before the stage's loader runs
        var zip = ZipSurgery.Replace(model.Zip, entry, content);

        Assert.Throws<Exception>(() => ZipSurgery.Load(zip));
        var ex = Assert.ThrowsExactly<PeftModelFormatException>(() => LoadWithLibrary(zip));
        StringAssert.Contains(ex.Message, $"{entry}: its ML.NET header is damaged");
    }

    [TestMethod]
    public void InvalidFieldWithMatchingHash_FailsNamingTheField()
    {
        // The hash says a header is whole; the rules say its values are usable. A zero length (a buggy or hostile
        // writer that recomputed the hash) must fail at load, not later in the tokenizer.
        var ex = Assert.ThrowsExactly<PeftModelFormatException>(
            () => PeftSavedModelChecks.Validate(SavedOptionsWith(s => s.MaxSequenceLength = 0), "X/Model.key"));
        Assert.AreEqual("X/Model.key: field 'MaxSequenceLength' must be at least 8, got 0.", ex.Message);

        ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftSavedModelChecks.Validate(
            SavedOptionsWith(s => s.Labels = s.Labels! with { Values = ["0", "0"] }), "X/Model.key"));
        StringAssert.Contains(ex.Message, "field 'Labels.Values' must be distinct");

        ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftSavedModelChecks.Validate(
            SavedOptionsWith(s => s.NumOutputs = 3), "X/Model.key"));
        StringAssert.Contains(ex.Message, "field 'Labels.Values' hold 2 value(s), but NumOutputs is 3");

        ex = Assert.ThrowsExactly<PeftModelFormatException>(() => PeftSavedModelChecks.Validate(
            SavedOptionsWith(s => s.MethodJson = s.MethodJson.Replace("\"Rank\":8", "\"Rank\":0")), "X/Model.key"));
        StringAssert.Contains(ex.Message, "field 'MethodJson' is invalid");
    }

    private static PeftSavedModel SavedOptionsWith(Action<PeftSavedModel> edit)
    {
        var model = ZipSurgery.Model;
        var key =
            System.Text.Encoding.UTF8.GetString(ZipSurgery.Entries(model.Zip)[model.StageDirectory + "/Model.key"]);
        int start = key.IndexOf("{\"FormatVersion\"", StringComparison.Ordinal);
        int end = key.IndexOf("\"TotalParameters\":", start, StringComparison.Ordinal);
        end = key.IndexOf('}', end) + 1;
        var saved =
            System.Text.Json.JsonSerializer.Deserialize<PeftSavedModel>(key[start..end], PeftModelWriter.JsonOptions)!;
        PeftSavedModelChecks.Validate(saved, "X/Model.key"); // as saved: valid
        edit(saved);
        return saved;
    }

    private static ITransformer LoadWithLibrary(byte[] zip)
    {
        string path = Path.Combine(Path.GetTempPath(), $"peft-edit-{Guid.NewGuid():N}.zip");
        try
        {
            File.WriteAllBytes(path, zip);
            return PeftModelIO.Load(new MLContext(1), path, out _);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
