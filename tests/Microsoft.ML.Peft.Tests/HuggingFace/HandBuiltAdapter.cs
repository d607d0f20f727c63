using System.Text.Json.Nodes;

namespace Microsoft.ML.Peft.Tests.HuggingFace;

/// <summary>
/// A peft-style LoRA adapter folder written by the test itself, key by key and tensor by tensor, as peft 0.13's
/// save_pretrained lays it out for BertForSequenceClassification on the tiny base (2 layers, hidden 8): the extra
/// keys newer peft versions add are included, as a real file would have them.
/// </summary>
internal sealed class HandBuiltAdapter
{
    public JsonObject Config { get; } = JsonNode.Parse("""
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": null,
          "bias": "none",
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layer_replication": null,
          "layers_pattern": null,
          "layers_to_transform": null,
          "loftq_config": {},
          "lora_alpha": 16,
          "lora_dropout": 0.1,
          "megatron_config": null,
          "megatron_core": "megatron.core",
          "modules_to_save": ["classifier", "score"],
          "peft_type": "LORA",
          "r": 2,
          "rank_pattern": {},
          "revision": null,
          "target_modules": ["value", "query"],
          "task_type": "SEQ_CLS",
          "use_dora": false,
          "use_rslora": false
        }
        """)!.AsObject();

    public Dictionary<string, (long[] Shape, float[] Data)> Tensors { get; } = new(StringComparer.Ordinal);

    public string? ModelConfig { get; set; } = """
        {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
         "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
        """;

    /// <param name="baseName">What base_model_name_or_path records.</param>
    /// <param name="loraB">Whether lora_B is random (else zero, peft's init).</param>
    /// <param name="classifierWeight">The classifier's weight [2, 8]; null for zeros.</param>
    public HandBuiltAdapter(string baseName, bool loraB, float[]? classifierWeight)
    {
        Config["base_model_name_or_path"] = baseName;
        int seed = 10;
        foreach (int layer in new[] { 0, 1 })
            foreach (string module in new[] { "query", "value" })
            {
                string prefix = $"base_model.model.bert.encoder.layer.{layer}.attention.self.{module}";
                Tensors[prefix + ".lora_A.weight"] = ([2, 8], HfKit.Random(16, seed++));
                Tensors[prefix + ".lora_B.weight"] = ([8, 2], loraB ? HfKit.Random(16, seed++, 2.0) : new float[16]);
            }
        Tensors["base_model.model.classifier.weight"] = ([2, 8], classifierWeight ?? new float[16]);
        // softmax([0, ln 3]) = [0.25, 0.75] whenever the weight is zero.
        Tensors["base_model.model.classifier.bias"] = ([2], [0f, MathF.Log(3)]);
    }

    public string WriteTo(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), Config.ToJsonString());
        HfKit.WriteTensors(Path.Combine(folder, "adapter_model.safetensors"), Tensors);
        if (ModelConfig is not null) File.WriteAllText(Path.Combine(folder, "config.json"), ModelConfig);
        return folder;
    }
}
