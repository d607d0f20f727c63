using Microsoft.ML;
using Microsoft.ML.Peft.Methods.UniPelt;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// UniPELT's export with gates that vary from token to token. After a short run every gate sits near sigmoid = 0.5 on
/// every token, so an export that averaged the prefix gate over padding too could still agree within 1e-4; with the
/// gates' weights × 50 it cannot (measured when written, with 2 epochs and the head × 30: 1.8e-3 off when broken,
/// 1.9e-7 when right). The head × 4 keeps the scores spread without saturating them.
/// </summary>
[TestClass]
public sealed class UniPeltOnnxExportTests
{
    [TestMethod]
    public void SharpGatesExportLikeTheStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (trained, data) = Classifier(ml, new UniPeltConfig(), TinyBase(temp.Path));
        // The saved (managed) trained tensors are what a save writes.
        foreach (var (name, t) in trained.TrainedTensors())
        {
            // Sharp gates, and a head that spreads the scores without saturating them.
            float factor = name.EndsWith("_gate.weight", StringComparison.Ordinal) ? 50
                : name == "classifier.weight" ? 4 : 1;
            for (int i = 0; i < t.Data.Length; i++) t.Data[i] *= factor;
        }
        // Saved and loaded, so that the stage scores with the sharpened weights too.
        using var stream = new MemoryStream();
        ml.Model.Save(trained, data.Schema, stream);
        stream.Position = 0;
        var stage = (PeftTextTransformer)ml.Model.Load(stream, out _);
        var expected = StageScores(stage, data);
        Assert.IsGreaterThan(0.01, expected.Max(r => r[0]) - expected.Min(r => r[0]),
            $"the head must read the input: {string.Join(", ", expected.Take(6).Select(r => r[0]))}");
        AssertClose(expected, OnnxScores(Export(stage), stage, data), 1e-4, "unipelt with sharp gates");
    }
}
