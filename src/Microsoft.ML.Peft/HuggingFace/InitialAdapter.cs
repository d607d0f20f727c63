using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// Fits an imported adapter to the data a stage trains on (<see cref="PeftTextOptions.InitialAdapterFolder"/>):
/// the classifier's rows reordered to the label column's key order, or, for regression, the head moved from label
/// units to the standardised targets training uses, so that the first step starts from exactly the adapter's scores.
/// </summary>
internal static class InitialAdapter
{
    /// <summary>The trained tensors to load into the fresh model (copies; the adapter's are left as read).</summary>
    public static Dictionary<string, FloatTensor> Fit(ImportedAdapter adapter, string folder, PeftTask task,
        KeyValueList? labels, LabelScaler scaler)
    {
        var result = adapter.Trained.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var weight = adapter.Trained["classifier.weight"];
        var bias = adapter.Trained["classifier.bias"];
        if (adapter.Task != task)
            throw new ArgumentException($"Option 'InitialAdapterFolder': the adapter in '{folder}' has a "
                + $"{adapter.Task} head, but this stage trains {task}.", nameof(PeftTextOptions.InitialAdapterFolder));
        if (task == PeftTask.Regression)
        {
            // Training predicts (label − Shift) / Scale; the adapter predicts the label.
            var w = weight.Clone();
            var b = bias.Clone();
            for (int i = 0; i < w.Data.Length; i++) w.Data[i] = (float)(w.Data[i] / scaler.Scale);
            for (int i = 0; i < b.Data.Length; i++) b.Data[i] = (float)((b.Data[i] - scaler.Shift) / scaler.Scale);
            result["classifier.weight"] = w;
            result["classifier.bias"] = b;
            return result;
        }
        var keys = labels!.Values;
        var rows = adapter.Labels.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => x.i, StringComparer.Ordinal);
        if (keys.Length != adapter.Labels.Length || keys.Any(k => !rows.ContainsKey(k)))
            throw new ArgumentException($"Option 'InitialAdapterFolder': the adapter's labels "
                + $"({string.Join(", ", adapter.Labels)}) (config.json id2label in '{folder}') differ from the label "
                + $"column's key values ({string.Join(", ", keys)}).", nameof(PeftTextOptions.InitialAdapterFolder));
        int width = weight.Columns;
        var ordered = new FloatTensor((long[])weight.Shape.Clone(), new float[weight.Data.Length]);
        var orderedBias = new FloatTensor((long[])bias.Shape.Clone(), new float[bias.Data.Length]);
        for (int k = 0; k < keys.Length; k++)
        {
            int row = rows[keys[k]];
            Array.Copy(weight.Data, row * width, ordered.Data, k * width, width);
            orderedBias.Data[k] = bias.Data[row];
        }
        result["classifier.weight"] = ordered;
        result["classifier.bias"] = orderedBias;
        return result;
    }
}
