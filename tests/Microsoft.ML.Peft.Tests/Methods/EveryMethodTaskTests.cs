using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// Every method the library knows goes through the same stage for every task: regression and sentence pairs
/// included. On the tiny ONNX base (fast): trains, scores finite values and round-trips through a model zip with
/// identical scores. Whether each method learns is tested in its own class.
/// </summary>
[TestClass]
public sealed class EveryMethodTaskTests
{
    public static IEnumerable<object[]> Methods =>
        PeftMethodConfig.KnownMethods.Order(StringComparer.Ordinal).Select(m => new object[] { m });

    private static PeftMethodConfig Default(string name) =>
        PeftMethodConfig.FromJson("{\"method\":\"" + name + "\",\"options\":{}}");

    private static void RoundTrip(MLContext ml, ITransformer model, IDataView data, string folder)
    {
        string zip = Path.Combine(folder, "model.zip");
        PeftModelIO.SaveAtomic(ml, model, data.Schema, zip);
        var expected = RowFormatter.Format(model.Transform(data), ["Score"]);
        Assert.IsTrue(
            expected.All(l => !l.Contains("NaN") && !l.Contains("Infinity")), string.Join("\n", expected.Take(3)));
        CollectionAssert.AreEqual(
            expected, RowFormatter.Format(new MLContext(2).Model.Load(zip, out _).Transform(data), ["Score"]));
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void RegressionWorksAndRoundTrips(string method)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        var rows = StageTestData.Negation(32, 1).Select(r => new RegressionAndPairTests.ScoreRow
        {
            Label = r.Label == "positive" ? 4 : 1, Text = r.Text!,
        });
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Peft().TextRegression(new PeftTextRegressionOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16, MaxSequenceLength = 16,
            Method = Default(method),
            BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")),
        }).Fit(data);
        Assert.AreEqual(PeftMethodConfig.FromJson(Default(method).ToJson()).MethodName, model.Method.MethodName);
        RoundTrip(ml, model, data, temp.Path);
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void SentencePairsWorkAndRoundTrip(string method)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        var a = StageTestData.Negation(32, 1);
        var b = StageTestData.Negation(32, 2);
        var data = ml.Data.LoadFromEnumerable(a.Zip(b, (x, y) => new PairRow
        {
            Label = x.Label == y.Label ? 1 : 0, Sentence1 = x.Text!, Sentence2 = y.Text!,
        }));
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(
            new PeftTextClassificationOptions
            {
                Sentence1ColumnName = "Sentence1", Sentence2ColumnName = "Sentence2", Epochs = 1, BatchSize = 16,
                MaxSequenceLength = 16, Method = Default(method),
                BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")),
            })).Fit(data);
        RoundTrip(ml, model, data, temp.Path);
    }
}
