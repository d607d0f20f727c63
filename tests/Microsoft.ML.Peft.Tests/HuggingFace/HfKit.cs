using Microsoft.ML;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Tests.Onnx;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// Shared pieces of the Hugging Face interop tests: a tiny random BERT base (2 layers, hidden 8, with a pooler),
/// small trained stages, score comparison and safetensors headers.
/// </summary>
internal static class HfKit
{
    public static string NewFolder(string name)
    {
        string folder = Path.Combine(Path.GetTempPath(), "peft-hf-tests", name + "-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    public static BaseModel TinyBase(string folder) => OnnxParityKit.TinyBase(folder);

    /// <summary>Options that make an imported stage score as the kit's stages do (float32, TorchSharp).</summary>
    public static PeftPretrainedOptions Exact(string[]? labels = null) => new()
    {
        Precision = PeftPrecision.Float32, ScoringEngine = ScoringEngine.TorchSharp, MaxSequenceLength = 24,
        Labels = labels,
    };

    public static (PeftTextTransformer Stage, IDataView Data) Classifier(MLContext ml, PeftMethodConfig method,
        BaseModel baseModel, int epochs = 2) => OnnxParityKit.Classifier(ml, method, baseModel, epochs: epochs);

    public static float[][] Scores(ITransformer stage, IDataView data) =>
        OnnxParityKit.StageScoresOf(stage.Transform(data));

    public static void AssertClose(float[][] expected, float[][] actual, double tolerance = 1e-5)
    {
        Assert.AreEqual(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.AreEqual(expected[i].Length, actual[i].Length);
            for (int j = 0; j < expected[i].Length; j++)
                worst = Math.Max(worst, Math.Abs(expected[i][j] - actual[i][j]));
        }
        Assert.IsTrue(worst <= tolerance, $"largest score difference {worst:G3} > {tolerance:G3}");
    }

    /// <summary>Tensor names and shapes of a safetensors file, read from its JSON header.</summary>
    public static Dictionary<string, long[]> TensorShapes(string path) =>
        SafeTensors.ReadHeader(path).Entries.ToDictionary(e => e.Name, e => e.Shape);

    /// <summary>Writes managed tensors as a safetensors file (for hand-built peft folders).</summary>
    public static void WriteTensors(string path, Dictionary<string, (long[] Shape, float[] Data)> tensors)
    {
        using var stream = File.Create(path);
        SafeTensors.Write(stream, tensors.Select(kv =>
            KeyValuePair.Create(kv.Key, new FloatTensor(kv.Value.Shape, kv.Value.Data))));
    }

    public static float[] Random(int count, int seed, double scale = 0.3)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();
    }
}
