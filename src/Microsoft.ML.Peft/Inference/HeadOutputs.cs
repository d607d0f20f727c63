using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// Step 4 of the data path: raw head outputs (<see cref="IScorer"/>) → what the stage's columns hold. Classification:
/// class probabilities (softmax) and the most probable class; regression: the score in label units.
/// </summary>
internal static class HeadOutputs
{
    /// <summary>Turns each row of raw outputs, in place, into what the Score column holds.</summary>
    public static float[][] ToScores(float[][] raw, PeftTask task, LabelScaler scaler)
    {
        foreach (var row in raw)
        {
            if (task == PeftTask.Regression) row[0] = scaler.ToLabelUnits(row[0]);
            else Softmax(row);
        }
        return raw;
    }

    /// <summary>Index of the largest value (the first one on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int c = 1; c < values.Length; c++) if (values[c] > values[best]) best = c;
        return best;
    }

    /// <summary>
    /// Softmax in place, computed in double after subtracting the largest logit so exp cannot overflow.
    /// </summary>
    public static void Softmax(Span<float> logits)
    {
        float max = logits[ArgMax(logits)];
        double sum = 0;
        for (int c = 0; c < logits.Length; c++) sum += Math.Exp(logits[c] - max);
        for (int c = 0; c < logits.Length; c++) logits[c] = (float)(Math.Exp(logits[c] - max) / sum);
    }

    /// <summary>−log softmax(<paramref name="logits"/>)[<paramref name="label"/>], the row's cross-entropy.</summary>
    public static double CrossEntropy(ReadOnlySpan<float> logits, int label)
    {
        float max = logits[ArgMax(logits)];
        double sum = 0;
        for (int c = 0; c < logits.Length; c++) sum += Math.Exp(logits[c] - max);
        return max + Math.Log(sum) - logits[label];
    }
}
