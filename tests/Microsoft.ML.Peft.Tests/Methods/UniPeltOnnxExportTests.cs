using Microsoft.ML;
using Microsoft.ML.Peft.Methods.UniPelt;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Tests.BaseModels;
using static Microsoft.ML.Peft.Tests.Onnx.OnnxParityKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

/// <summary>
/// UniPELT's export with gates that vary from token to token. After the parity test's short run every gate still sits
/// near sigmoid = 0.5 on every token and the head barely reads the encoder, so an export that averaged the prefix gate
/// over padding too still agreed within 1e-4 there; with the gates' weights × 50 and the head's × 30 it differs by
/// ~2e-3, while the correct export stays within ~1e-6.
/// </summary>
[TestClass]
public sealed class UniPeltOnnxExportTests
{
    [TestMethod]
    public void SharpGatesExportLikeTheStage()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var ml = new MLContext(1);
        var (trained, data) = Classifier(ml, new UniPeltConfig(), TinyBase(temp.Path), epochs: 1);
        using (no_grad())
            foreach (var (name, t) in trained.TrainedTensors())
            {
                if (name.EndsWith("_gate.weight", StringComparison.Ordinal)) t.mul_(50);
                if (name == "classifier.weight") t.mul_(30);
            }
        // Saved and loaded, so that the stage scores with the sharpened weights too.
        using var stream = new MemoryStream();
        ml.Model.Save(trained, data.Schema, stream);
        stream.Position = 0;
        var stage = (PeftTextTransformer)ml.Model.Load(stream, out _);
        var expected = StageScores(stage, data);
        Assert.IsGreaterThan(0.01, expected.Max(r => r[0]) - expected.Min(r => r[0]), "the head must read the input");
        AssertClose(expected, OnnxScores(Export(stage), stage, data), 1e-4, "unipelt with sharp gates");
    }
}
