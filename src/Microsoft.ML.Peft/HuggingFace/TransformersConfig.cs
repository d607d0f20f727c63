using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// The <c>config.json</c> of a <c>BertForSequenceClassification</c>: the encoder's fields (as
/// <see cref="EncoderConfig.ToJson"/>) plus what <c>PretrainedConfig</c> stores for a classification head
/// (transformers' configuration_utils.py: <c>architectures</c>, <c>id2label</c>, <c>label2id</c>,
/// <c>problem_type</c>) and <c>BertConfig</c>'s remaining fields (models/bert/configuration_bert.py).
/// </summary>
internal static class TransformersConfig
{
    /// <summary>The head's labels and task as read from a <c>config.json</c>.</summary>
    internal sealed record HeadLabels(PeftTask Task, string[] Labels);

    /// <summary>The config text; <paramref name="labels"/> null for regression (one output).</summary>
    public static string Write(EncoderConfig encoder, string[]? labels, double headDropout)
    {
        if (encoder.Architecture != EncoderArchitecture.Bert)
            throw new NotSupportedException($"Only BERT encoders are exported, not {encoder.Architecture}.");
        var o = JsonNode.Parse(encoder.ToJson())!.AsObject();
        o["architectures"] = new JsonArray("BertForSequenceClassification");
        o["classifier_dropout"] = headDropout;
        o["initializer_range"] = 0.02;
        o["position_embedding_type"] = "absolute";
        o["use_cache"] = true;
        o["torch_dtype"] = "float32";
        // transformers writes the ids as JSON object keys (strings) and turns them back into ints on load.
        var names = labels ?? ["LABEL_0"];
        var id2label = new JsonObject();
        var label2id = new JsonObject();
        for (int i = 0; i < names.Length; i++)
        {
            id2label[i.ToString(CultureInfo.InvariantCulture)] = names[i];
            label2id[names[i]] = i;
        }
        o["id2label"] = id2label;
        o["label2id"] = label2id;
        o["problem_type"] = labels is null ? "regression" : "single_label_classification";
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>
    /// The task and labels of <paramref name="path"/>'s head: <c>problem_type</c> <c>regression</c> (or a single label
    /// without a problem type) is regression; otherwise the labels in id order from <c>id2label</c>.
    /// </summary>
    public static HeadLabels ReadLabels(string path)
    {
        JsonObject o;
        try
        {
            o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new PeftModelFormatException($"{path}: the file is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new PeftModelFormatException($"{path}: the file is not valid JSON ({e.Message}).", e);
        }
        string? problem = o["problem_type"] is JsonValue p && p.TryGetValue<string>(out var s) ? s : null;
        if (o["id2label"] is not JsonObject map || map.Count == 0)
            throw new PeftModelFormatException($"{path}: key 'id2label' is missing; name the labels instead.");
        var labels = new string[map.Count];
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out int id)
                || id >= labels.Length || labels[id] is not null)
                throw new PeftModelFormatException(
                    $"{path}: key 'id2label' must map the ids 0..{labels.Length - 1} once each, got '{key}'.");
            labels[id] = value is JsonValue v && v.TryGetValue<string>(out var name) ? name
                : throw new PeftModelFormatException($"{path}: key 'id2label' maps '{key}' to a non-string.");
        }
        bool regression = problem == "regression" || (problem is null && labels.Length == 1);
        return new HeadLabels(regression ? PeftTask.Regression : PeftTask.Classification, labels);
    }
}
