using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// The one place a document's window scores become the document's: raw head outputs of its windows in, one raw
/// output row out, so every engine and the trainer's validation pool alike (they all score through
/// <see cref="BatchPlanner.ScoreInBatches"/>). Classification pools class probabilities and returns their logarithms:
/// log-probabilities are logits whose softmax is those probabilities, so <see cref="HeadOutputs"/>' softmax, arg-max
/// and cross-entropy read a pooled row as they read a window's. Regression pools the values (the label scaler is a
/// positive affine map, so mean and max commute with it).
/// </summary>
internal sealed class WindowPool
{
    // Keeps log finite when a class's pooled probability underflows double.
    private const double SmallestProbability = double.Epsilon;

    public WindowPool(WindowPooling mode, bool probabilities)
    {
        Mode = mode;
        Probabilities = probabilities;
    }

    public WindowPooling Mode { get; }

    /// <summary>True for classification: pool softmax probabilities; false for regression: pool values.</summary>
    public bool Probabilities { get; }

    /// <summary>The document's raw output row from its windows' raw output rows (at least one).</summary>
    public float[] Combine(ReadOnlySpan<float[]> windows)
    {
        int k = windows[0].Length;
        var pooled = new double[k];
        if (Mode == WindowPooling.Max) Array.Fill(pooled, double.NegativeInfinity);
        foreach (var raw in windows)
        {
            var values = (float[])raw.Clone();
            if (Probabilities) HeadOutputs.Softmax(values);
            for (int c = 0; c < k; c++)
                pooled[c] = Mode == WindowPooling.Max ? Math.Max(pooled[c], values[c]) : pooled[c] + values[c];
        }
        // Mean divides by the windows; Max renormalises the per-class maxima so they are probabilities again.
        double divisor = Mode == WindowPooling.Mean ? windows.Length : Probabilities ? pooled.Sum() : 1;
        var result = new float[k];
        for (int c = 0; c < k; c++)
        {
            double v = pooled[c] / divisor;
            result[c] = (float)(Probabilities ? Math.Log(Math.Max(v, SmallestProbability)) : v);
        }
        return result;
    }
}
