using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Stages;

/// <summary>
/// A small classifier on the tiny ONNX base, saved once per test run, and the tools to damage its zip the way a disk,
/// a transfer or a hand edit would: entry contents replaced and re-zipped, so the zip's CRC is valid again.
/// </summary>
internal static class ZipSurgery
{
    private static readonly Lazy<SavedModel> Shared = new(Train);

    /// <summary>The saved model, its scoring data and the expected scores.</summary>
    internal sealed record SavedModel(byte[] Zip, string StageDirectory, IDataView Data, List<string> Scores);

    /// <summary>Trained and saved once; the labels are the strings "0" and "1".</summary>
    internal static SavedModel Model => Shared.Value;

    /// <summary>The entries of the zip, by full name.</summary>
    internal static Dictionary<string, byte[]> Entries(byte[] zip)
    {
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        return archive.Entries.ToDictionary(e => e.FullName, e =>
        {
            using var s = e.Open();
            using var m = new MemoryStream();
            s.CopyTo(m);
            return m.ToArray();
        });
    }

    /// <summary>A copy of <paramref name="zip"/> with entry <paramref name="name"/> holding
    /// <paramref name="content"/>.</summary>
    internal static byte[] Replace(byte[] zip, string name, byte[] content)
    {
        var output = new MemoryStream();
        using (var archive = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (entryName, bytes) in Entries(zip))
            {
                using var s = archive.CreateEntry(entryName).Open();
                s.Write(entryName == name ? content : bytes);
            }
        }
        return output.ToArray();
    }

    /// <summary>Replaces the one occurrence of <paramref name="from"/> (ASCII) in the entry by
    /// <paramref name="to"/>.</summary>
    internal static byte[] Edit(byte[] zip, string name, string from, string to)
    {
        Assert.AreEqual(from.Length, to.Length, "a same-length edit keeps every length prefix valid");
        var content = Entries(zip)[name];
        var text = System.Text.Encoding.Latin1.GetString(content);
        int at = text.IndexOf(from, StringComparison.Ordinal);
        Assert.IsGreaterThanOrEqualTo(0, at, $"'{from}' not found in {name}");
        Assert.AreEqual(-1, text.IndexOf(from, at + 1, StringComparison.Ordinal), $"'{from}' occurs twice in {name}");
        System.Text.Encoding.Latin1.GetBytes(to).CopyTo(content, at);
        return Replace(zip, name, content);
    }

    /// <summary>Loads <paramref name="zip"/> through ML.NET, as a user would.</summary>
    internal static ITransformer Load(byte[] zip) => new MLContext(1).Model.Load(new MemoryStream(zip), out _);

    /// <summary>The score lines of <paramref name="model"/> on the shared data.</summary>
    internal static List<string> Score(ITransformer model) =>
        RowFormatter.Format(model.Transform(Model.Data), ["Score"]);

    /// <summary>The exception and every inner one, outermost first.</summary>
    internal static IEnumerable<Exception> Chain(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            yield return ex;
            if (ex is AggregateException agg)
                foreach (var inner in agg.InnerExceptions.SelectMany(Chain))
                    yield return inner;
        }
    }

    private static SavedModel Train()
    {
        string folder = Path.Combine(Path.GetTempPath(), "peft-integrity-" + Guid.NewGuid().ToString("N"));
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(folder, "base"));
        var ml = new MLContext(1);
        var rows = StageTestData.Negation(32, 1)
            .Select(r => new TextRow { Label = r.Label == "positive" ? "1" : "0", Text = r.Text });
        var data = ml.Data.LoadFromEnumerable(rows.OrderBy(r => r.Label, StringComparer.Ordinal).ToList());
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().TextClassification(
            new PeftTextClassificationOptions
            {
                Sentence1ColumnName = "Text", Epochs = 1, BatchSize = 16, MaxSequenceLength = 16,
                BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(folder, "cache")),
            })).Fit(data);
        using var zip = new MemoryStream();
        ml.Model.Save(model, data.Schema, zip);
        var bytes = zip.ToArray();
        string stage = Entries(bytes).Keys.Single(k => k.EndsWith("/Trained.safetensors", StringComparison.Ordinal));
        var saved = new SavedModel(bytes, stage[..stage.LastIndexOf('/')], data, []);
        saved.Scores.AddRange(RowFormatter.Format(model.Transform(data), ["Score"]));
        try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        return saved;
    }
}
