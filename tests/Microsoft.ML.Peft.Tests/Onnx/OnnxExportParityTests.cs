using Microsoft.ML;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;

namespace Microsoft.ML.Peft.Tests.Onnx;

/// <summary>
/// Every method exports: ONNX Runtime on the exported model gives the stage's Score within 1e-4 (float32), for
/// classification and regression, single sentences and pairs (cross- and bi-encoder), rows padded in one batch.
/// </summary>
[TestClass]
public sealed class OnnxExportParityTests
{
    private const double Tolerance = 1e-4;

    public static IEnumerable<object[]> Methods =>
        PeftMethodConfig.KnownMethods.Order(StringComparer.Ordinal).Select(m => new object[] { m });

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void ClassifierAndRegressorExportsScoreLikeTheStage(string method)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var baseModel = TinyBase(temp.Path);
        var ml = new MLContext(1);
        var (classifier, data) = Classifier(ml, Default(method), baseModel);
        AssertClose(StageScores(classifier, data), OnnxScores(Export(classifier), classifier, data), Tolerance,
            $"{method} classification");
        var (regressor, rdata) = Regressor(ml, Default(method), baseModel);
        AssertClose(StageScores(regressor, rdata), OnnxScores(Export(regressor), regressor, rdata), Tolerance,
            $"{method} regression");
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void PairExportsScoreLikeTheStage(string method)
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var baseModel = TinyBase(temp.Path);
        var ml = new MLContext(1);
        foreach (var encoding in new[] { PairEncoding.CrossEncoder, PairEncoding.BiEncoder })
        {
            var (stage, data) = Classifier(ml, Default(method), baseModel, encoding, pair: true);
            AssertClose(StageScores(stage, data), OnnxScores(Export(stage), stage, data), Tolerance,
                $"{method} {encoding} pairs");
        }
    }
}
