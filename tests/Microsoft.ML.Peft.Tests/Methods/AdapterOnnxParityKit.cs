using Microsoft.ML;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;
using Microsoft.ML.Peft.Training;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// ONNX parity for the adapter-based methods' non-default options (placements, activations, ProPETL's LoRA
/// prototype, MAM's folded MLP): the export parity suite trains each method at its defaults only, and these options
/// take other paths through the export.
/// </summary>
internal static class AdapterOnnxParityKit
{
    /// <summary>
    /// Trains a small regressor per option set and asserts its ONNX export scores within 1e-4. A regressor at a
    /// large learning rate: its score is the head's output in label units, and the method's weights move far from
    /// their zero start, so a wrong adapter, mask or prefix shows as a difference well above the tolerance (at the
    /// suite's settings some such errors stay near 1e-4).
    /// </summary>
    public static void AssertExportsScoreLikeTheStage(params PeftMethodConfig[] methods)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var baseModel = TinyBase(temp.Path);
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(StageTestData.Negation(48, 1).Select((r, i) => new PairRow
        {
            Label = r.Label == "positive" ? 10 : -10, Sentence1 = i % 3 == 0 ? r.Text! + " a lot today" : r.Text!,
        }));
        foreach (var method in methods)
        {
            var stage = ml.Peft().TextRegression(new PeftTextRegressionOptions
            {
                Sentence1ColumnName = "Sentence1", Epochs = 3, BatchSize = 8, LearningRate = 2e-2,
                MaxSequenceLength = 24, Method = method, BaseModel = baseModel, Precision = PeftPrecision.Float32,
                ScoringEngine = ScoringEngine.TorchSharp,
            }).Fit(data);
            AssertClose(StageScores(stage, data), OnnxScores(Export(stage), stage, data), 1e-4, method.ToJson());
        }
    }
}
