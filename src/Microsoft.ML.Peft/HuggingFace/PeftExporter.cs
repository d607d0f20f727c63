using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.HuggingFace;

/// <summary>
/// Writes a trained stage as a <c>peft</c> adapter folder (<see cref="SaveAdapter"/>) or, merged, as a plain
/// <c>transformers</c> <c>BertForSequenceClassification</c> folder (<see cref="SaveMerged"/>), each with the
/// tokenizer files and a <c>config.json</c> whose <c>id2label</c> holds the stage's label values.
/// </summary>
internal static class PeftExporter
{
    // safetensors files for transformers must say they hold PyTorch tensors: transformers refuses a file whose
    // metadata 'format' is not pt, tf, flax or mlx (modeling_utils.py, load_state_dict); peft writes the same.
    private static readonly Dictionary<string, string> Metadata = new() { ["format"] = "pt" };

    public static void SaveAdapter(PeftTextTransformer stage, string folder)
    {
        var mapping = stage.Method.CreatePeftAdapterMapping();
        if (mapping.IsWholeModel)
        {
            SaveMerged(stage, folder);
            return;
        }
        var saved = stage.Saved;
        var encoder = CheckHead(saved);
        var trained = stage.TrainedTensors();
        var tensors = mapping.ToPeft(trained.Where(kv => !PeftModel.IsHeadParameter(kv.Key)))
            .Concat(Head(saved, trained["classifier.weight"], trained["classifier.bias"]))
            .Select(kv => KeyValuePair.Create(mapping.FileName(kv.Key), kv.Value))
            .ToList();
        var config = new JsonObject
        {
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = PeftFormat.HubId(saved.Base.Kind, saved.Base.Origin, saved.Base.Name),
            ["revision"] = null,
            ["peft_type"] = mapping.PeftType,
            ["task_type"] = PeftFormat.SequenceClassification,
            ["inference_mode"] = true,
            ["modules_to_save"] = new JsonArray(PeftFormat.HeadModule),
        };
        mapping.WriteConfig(config, encoder);
        AtomicFolder.Write(folder, temp =>
        {
            File.WriteAllText(Path.Combine(temp, PeftFormat.AdapterConfigFile), Sorted(config));
            WriteTensors(Path.Combine(temp, PeftFormat.AdapterWeightsFile), tensors);
            WriteCommon(stage, encoder, temp);
        });
    }

    public static void SaveMerged(PeftTextTransformer stage, string folder)
    {
        var saved = stage.Saved;
        var encoder = CheckHead(saved);
        var weights = stage.GetMergedWeights();
        Dictionary<string, FloatTensor> managed;
        try { managed = TorchWeights.ToManaged(weights); }
        finally { foreach (var t in weights.Values) t.Dispose(); }
        var head = Head(saved, managed["classifier.weight"], managed["classifier.bias"]).ToList();
        foreach (var (name, tensor) in head) managed[name] = tensor;
        AtomicFolder.Write(folder, temp =>
        {
            WriteTensors(Path.Combine(temp, PeftFormat.ModelWeightsFile), managed.OrderBy(kv => kv.Key,
                StringComparer.Ordinal));
            WriteCommon(stage, encoder, temp);
        });
    }

    /// <summary>
    /// The stage's head must be one <c>BertForSequenceClassification</c> computes: a BERT encoder, the pooler
    /// (dense + tanh over [CLS]) then the classifier, one text or a cross-encoded pair.
    /// </summary>
    private static EncoderConfig CheckHead(PeftSavedModel saved)
    {
        var encoder = EncoderConfig.FromJson(saved.EncoderConfigJson);
        if (encoder.Architecture != EncoderArchitecture.Bert)
            throw new NotSupportedException(
                $"This stage's base is {encoder.Architecture}; only BERT bases are exported (as "
                + "BertForSequenceClassification). RoBERTa and DistilBERT adapters import and score, and training "
                + "continues from them, but are not written back.");
        if (saved.PairEncoding != PairEncoding.CrossEncoder)
            throw new NotSupportedException(
                $"This stage encodes pairs with PairEncoding = {saved.PairEncoding}; transformers' "
                + "BertForSequenceClassification reads a pair as one cross-encoded sequence, so only CrossEncoder "
                + "stages can be exported.");
        if (saved.Pooling != Pooling.Pooler)
            throw new NotSupportedException(
                $"This stage pools with Pooling = {saved.Pooling}; transformers' BertForSequenceClassification "
                + "classifies the pooler output, so only stages trained with Pooling = Pooler (the default for bases "
                + "with a pooler) can be exported.");
        return encoder;
    }

    /// <summary>
    /// The head in label units: regression trains on standardised labels (prediction = output × LabelScale +
    /// LabelShift), folded into the weights so that transformers' output is the prediction itself.
    /// </summary>
    private static IEnumerable<KeyValuePair<string, FloatTensor>> Head(PeftSavedModel saved, FloatTensor weight,
        FloatTensor bias)
    {
        if (saved.Task != PeftTask.Regression)
            return [KeyValuePair.Create("classifier.weight", weight), KeyValuePair.Create("classifier.bias", bias)];
        var w = weight.Clone();
        var b = bias.Clone();
        for (int i = 0; i < w.Data.Length; i++) w.Data[i] = (float)(w.Data[i] * saved.LabelScale);
        for (int i = 0; i < b.Data.Length; i++) b.Data[i] = (float)(b.Data[i] * saved.LabelScale + saved.LabelShift);
        return [KeyValuePair.Create("classifier.weight", w), KeyValuePair.Create("classifier.bias", b)];
    }

    private static void WriteCommon(PeftTextTransformer stage, EncoderConfig encoder, string folder)
    {
        var saved = stage.Saved;
        string[]? labels = saved.Task == PeftTask.Regression ? null : saved.Labels!.Values;
        File.WriteAllText(Path.Combine(folder, PeftFormat.ModelConfigFile),
            TransformersConfig.Write(encoder, labels, saved.HeadDropout));
        foreach (var (name, bytes) in stage.Tokenizer.ExportFiles())
            File.WriteAllBytes(Path.Combine(folder, name), bytes);
    }

    private static void WriteTensors(string path, IEnumerable<KeyValuePair<string, FloatTensor>> tensors)
    {
        using var stream = File.Create(path);
        SafeTensors.Write(stream, tensors, Metadata);
    }

    /// <summary>JSON with sorted keys and two-space indents, as peft's <c>PeftConfigMixin.save_pretrained</c>
    /// (json.dumps(indent=2, sort_keys=True), peft/config.py).</summary>
    private static string Sorted(JsonObject config)
    {
        var sorted = new JsonObject();
        foreach (var (key, value) in config.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            sorted[key] = value?.DeepClone();
        return sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
