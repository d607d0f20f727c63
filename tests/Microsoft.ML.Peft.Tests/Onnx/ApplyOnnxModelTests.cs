using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Tests.BaseModels;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;

namespace Microsoft.ML.Peft.Tests.Onnx;

/// <summary>
/// An exported stage scored by ML.NET's own <c>ApplyOnnxModel</c> (rows tokenized with the stage's tokenizer and padded
/// to its maximum length, shapes given as [1, L]) gives the stage's Score.
/// </summary>
[TestClass]
public sealed class ApplyOnnxModelTests
{
    private const int Length = 24;

    private sealed class TokenRow
    {
        public long[] input_ids { get; set; } = [];
        public long[] attention_mask { get; set; } = [];
        public long[] token_type_ids { get; set; } = [];
    }

    [TestMethod]
    public void MlNetScoresTheExportedStageLikeTheStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (stage, data) = Classifier(ml, new LoraConfig(), TinyBase(temp.Path), maxLength: Length);
        string onnx = Path.Combine(temp.Path, "stage.onnx");
        stage.ExportOnnx(onnx);

        var rows = data.GetColumn<string>("Sentence1").Select(text =>
        {
            var t = stage.Tokenizer.EncodeSingle(text, Length);
            long[] Padded(IEnumerable<int> values) => values.Select(v => (long)v)
                .Concat(Enumerable.Repeat(0L, Length - t.Length)).ToArray();
            return new TokenRow
            {
                input_ids = Padded(t.InputIds), attention_mask = Padded(Enumerable.Repeat(1, t.Length)),
                token_type_ids = Padded(t.TokenTypeIds),
            };
        }).ToList();
        var schema = SchemaDefinition.Create(typeof(TokenRow));
        foreach (var column in schema) column.ColumnType = new VectorDataViewType(NumberDataViewType.Int64, Length);
        var tokens = ml.Data.LoadFromEnumerable(rows, schema);
        var shapes = new Dictionary<string, int[]>
        {
            ["input_ids"] = [1, Length], ["attention_mask"] = [1, Length], ["token_type_ids"] = [1, Length],
            ["Score"] = [1, 2], ["PredictedLabel"] = [1],
        };
        var scored = ml.Transforms.ApplyOnnxModel(["Score"], ["input_ids", "attention_mask", "token_type_ids"], onnx,
            shapes, gpuDeviceId: null, fallbackToCpu: false, recursionLimit: 100).Fit(tokens).Transform(tokens);
        var actual = scored.GetColumn<float[]>("Score").ToArray();
        AssertClose(StageScores(stage, data), actual, 1e-4, "ApplyOnnxModel");
    }
}
