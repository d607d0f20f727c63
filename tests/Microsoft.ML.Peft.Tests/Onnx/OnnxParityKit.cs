using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.Onnx;

/// <summary>
/// Trains small float32 stages on the tiny ONNX base and scores an exported model with a bare ONNX Runtime session,
/// rows of different lengths in one padded batch, for comparison with the stage's own (TorchSharp) Score column.
/// </summary>
internal static class OnnxParityKit
{
    // High enough that every method moves far from its initialisation in a few steps: an export that dropped or
    // misplaced part of a method would then show in the scores.
    private const double LearningRate = 2e-2;

    public static PeftMethodConfig Default(string name) =>
        PeftMethodConfig.FromJson("{\"method\":\"" + name + "\",\"options\":{}}");

    // The words of StageTestData.Negation and the kit's suffixes: with them in the vocabulary, rows differ in more
    // than length, so that the scores being compared vary across rows.
    private static readonly string[] Words =
    [
        "love", "like", "enjoy", "adore", "recommend", "admire", "treasure", "hate", "dislike", "regret", "despise",
        "resent", "loathe", "detest", "really", "truly", "honestly", "actually", "genuinely", "simply", "certainly",
        "movie", "book", "phone", "hotel", "meal", "game", "song", "car", "laptop", "show", "i", "we", "they", "my",
        "friends", "most", "people", "do", "not", "this", "a", "lot", "today", "and", "more", "words",
    ];

    public static BaseModel TinyBase(string folder)
    {
        // 64 positions: rows of different lengths, so that batches hold padding.
        var (onnx, vocab) = new TinyOnnx { Positions = 64, Vocab = 5 + Words.Length }
            .WriteTo(Path.Combine(folder, "base"));
        File.WriteAllText(vocab, string.Join("\n", new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }
            .Concat(Words)) + "\n");
        return BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(folder, "cache"));
    }

    /// <summary>A classifier on single sentences (or pairs when <paramref name="pairs"/> is set).</summary>
    public static (PeftTextTransformer Stage, IDataView Data) Classifier(MLContext ml, PeftMethodConfig method,
        BaseModel baseModel, PairEncoding pairs = PairEncoding.Auto, bool pair = false, int epochs = 3,
        int? maxLength = null)
    {
        var a = StageTestData.Negation(48, 1);
        var b = StageTestData.Negation(48, 2);
        var data = pair
            ? ml.Data.LoadFromEnumerable(a.Zip(b, (x, y) => new PairRow
            {
                Label = x.Label == y.Label ? 1 : 0, Sentence1 = x.Text!, Sentence2 = y.Text! + " and more words",
            }))
            : ml.Data.LoadFromEnumerable(a.Select((r, i) => new PairRow
            {
                Label = r.Label == "positive" ? 1 : 0, Sentence1 = i % 3 == 0 ? r.Text! + " a lot today" : r.Text!,
            }));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var stage = ml.Peft().TextClassification(new PeftTextClassificationOptions
        {
            Sentence1ColumnName = "Sentence1", Sentence2ColumnName = pair ? "Sentence2" : null, Epochs = epochs,
            BatchSize = 16, MaxSequenceLength = maxLength ?? (pair ? 64 : 24), Method = method, BaseModel = baseModel,
            Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp, PairEncoding = pairs,
            LearningRate = LearningRate,
        }).Fit(keyed);
        return (stage, keyed);
    }

    /// <summary>A regressor on single sentences.</summary>
    public static (PeftTextTransformer Stage, IDataView Data) Regressor(MLContext ml, PeftMethodConfig method,
        BaseModel baseModel, int epochs = 3)
    {
        var data = ml.Data.LoadFromEnumerable(StageTestData.Negation(48, 1).Select((r, i) => new PairRow
        {
            Label = r.Label == "positive" ? 4 : 1, Sentence1 = i % 3 == 0 ? r.Text! + " a lot today" : r.Text!,
        }));
        var stage = ml.Peft().TextRegression(new PeftTextRegressionOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Sentence1", Epochs = epochs, BatchSize = 16,
            MaxSequenceLength = 24, Method = method, BaseModel = baseModel, Precision = PeftPrecision.Float32,
            ScoringEngine = ScoringEngine.TorchSharp, LearningRate = LearningRate,
        }).Fit(data);
        return (stage, data);
    }

    /// <summary>The stage's Score column, one array per row.</summary>
    public static float[][] StageScores(PeftTextTransformer stage, IDataView data) =>
        StageScoresOf(stage.Transform(data));

    /// <summary>The Score column of a scored view, one array per row.</summary>
    public static float[][] StageScoresOf(IDataView scored)
    {
        var column = scored.Schema["Score"];
        var result = new List<float[]>();
        using var cursor = scored.GetRowCursor([column]);
        if (column.Type is VectorDataViewType)
        {
            var get = cursor.GetGetter<VBuffer<float>>(column);
            VBuffer<float> v = default;
            while (cursor.MoveNext()) { get(ref v); result.Add(v.DenseValues().ToArray()); }
        }
        else
        {
            var get = cursor.GetGetter<float>(column);
            float f = 0;
            while (cursor.MoveNext()) { get(ref f); result.Add([f]); }
        }
        return result.ToArray();
    }

    /// <summary>The exported model's Score output for every row, in one padded batch.</summary>
    public static float[][] OnnxScores(byte[] model, PeftTextTransformer stage, IDataView data)
    {
        bool pair = stage.InputColumnNames.Count > 1;
        var texts = ReadTexts(data, pair);
        var encoder = new RowEncoder(stage.Tokenizer, stage.Saved.MaxSequenceLength, pair);
        var rows = texts.Select(t => encoder.Encode(t.First, t.Second)).ToArray();
        var batch = TokenBatch.FromRows(rows, stage.Tokenizer.PadTokenId);
        Assert.IsTrue(rows.Select(r => r.Length).Distinct().Count() > 1, "the batch must hold padding");
        long[] shape = [batch.BatchSize, batch.SequenceLength];
        using var session = new InferenceSession(model);
        using var ids = OrtValue.CreateTensorValueFromMemory(batch.InputIds, shape);
        using var mask = OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, shape);
        using var types = OrtValue.CreateTensorValueFromMemory(batch.TokenTypeIds, shape);
        using var run = new RunOptions();
        using var outputs = session.Run(run, ["input_ids", "attention_mask", "token_type_ids"], [ids, mask, types],
            ["Score"]);
        var flat = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        int k = flat.Length / rows.Length;
        return Enumerable.Range(0, rows.Length).Select(r => flat.AsSpan(r * k, k).ToArray()).ToArray();
    }

    private static (string First, string? Second)[] ReadTexts(IDataView data, bool pair)
    {
        return data.GetColumn<string>("Sentence1").Zip(
            pair ? data.GetColumn<string>("Sentence2").Select(s => (string?)s)
                : Enumerable.Repeat<string?>(null, int.MaxValue),
            (a, b) => (a, b)).ToArray();
    }

    /// <summary>Asserts two score tables agree within <paramref name="tolerance"/>, naming the first difference.
    /// </summary>
    public static void AssertClose(float[][] expected, float[][] actual, double tolerance, string what)
    {
        Assert.HasCount(expected.Length, actual);
        double worst = 0;
        for (int r = 0; r < expected.Length; r++)
        {
            Assert.HasCount(expected[r].Length, actual[r]);
            for (int c = 0; c < expected[r].Length; c++)
                worst = Math.Max(worst, Math.Abs(expected[r][c] - actual[r][c]));
        }
        Assert.IsTrue(worst <= tolerance, $"{what}: largest difference {worst:G3} > {tolerance:G3}.");
    }

    /// <summary>Exports to memory.</summary>
    public static byte[] Export(PeftTextTransformer stage)
    {
        using var stream = new MemoryStream();
        stage.ExportOnnx(stream);
        return stream.ToArray();
    }
}
