using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.HuggingFace;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.MLNet;

// Hugging Face interop: the stage as a peft adapter or a merged transformers model, and the stage an imported adapter
// makes. Formats and refusals: docs/huggingface.md.
public sealed partial class PeftTextTransformer
{
    /// <summary>
    /// Saves the stage as a Hugging Face <c>peft</c> adapter folder, loadable with
    /// <c>PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base), folder)</c>:
    /// <c>adapter_config.json</c>, <c>adapter_model.safetensors</c> (peft's tensor names, the classifier as
    /// <c>modules_to_save</c>), <c>config.json</c> (<c>id2label</c> from the label's key values) and the tokenizer
    /// files. LoRA (rsLoRA, DoRA), AdaLoRA, (IA)³, and prefix and prompt tuning trained with <c>PeftLayout</c> go out
    /// as adapters; full fine-tuning as a plain <c>transformers</c> folder (see <see cref="SaveMergedPretrained"/>).
    /// The folder is written whole or not at all.
    /// </summary>
    /// <param name="folder">The folder to write (replaced if it exists).</param>
    /// <exception cref="NotSupportedException">The method has no peft counterpart (adapters, MAM, UniPELT, ProPETL,
    /// BitFit, LayerNorm tuning, Child-Tuning, linear probe, QLoRA), or peft would compute differently (prefix and
    /// prompt tuning without <c>PeftLayout</c>, <see cref="PeftTextOptions.Pooling"/> other than the pooler,
    /// bi-encoded pairs, a non-BERT base); the message says which.</exception>
    public void SavePretrained(string folder) => PeftExporter.SaveAdapter(this, folder);

    /// <summary>
    /// Saves the merged model (the method folded into the encoder, <c>peft</c>'s <c>merge_and_unload</c>) as a plain
    /// <c>transformers</c> <c>BertForSequenceClassification</c> folder: <c>model.safetensors</c>,
    /// <c>config.json</c> and the tokenizer files; regression heads output label units. Written whole or not at all.
    /// </summary>
    /// <param name="folder">The folder to write (replaced if it exists).</param>
    /// <exception cref="NotSupportedException">The stage is not merged (<see cref="IsMerged"/>), or its head is not
    /// <c>BertForSequenceClassification</c>'s (pooling, pair encoding or base, as for
    /// <see cref="SavePretrained"/>).</exception>
    public void SaveMergedPretrained(string folder) => PeftExporter.SaveMerged(this, folder);

    /// <summary>A ready stage from an imported adapter, built as loading a saved zip builds one.</summary>
    internal static PeftTextTransformer FromImported(IHostEnvironment env, ImportedAdapter adapter,
        BaseModel baseModel, PeftPretrainedOptions o)
    {
        var tokenizer = baseModel.CreateTokenizer();
        bool classification = adapter.Task == PeftTask.Classification;
        var saved = new PeftSavedModel
        {
            Task = adapter.Task, MethodJson = adapter.Method.ToJson(), EncoderConfigJson = baseModel.Config.ToJson(),
            Pooling = adapter.Pooling, HeadLayer = adapter.HeadLayer, PairEncoding = PairEncoding.CrossEncoder,
            HeadDropout = 0.1,
            NumOutputs = classification ? adapter.Labels.Length : 1,
            MaxSequenceLength = Math.Min(o.MaxSequenceLength, adapter.Method.TextPositions(baseModel.Config)),
            Merged = adapter.Merged, Precision = o.Precision, ScoringEngine = o.ScoringEngine,
            Labels = classification ? new KeyValueList { Values = adapter.Labels } : null,
            ScoreColumn = o.ScoreColumnName,
            PredictedLabelColumn = classification ? o.PredictedLabelColumnName : null,
            Base = BaseModelRecord.Describe(baseModel, storeWeights: true),
            TokenizerKind = tokenizer.Kind, TokenizerFiles = tokenizer.ExportFiles().Keys.ToArray(),
            TrainableParameters = adapter.TrainableParameters, TotalParameters = adapter.TotalParameters,
        };
        var method = PeftSavedModelChecks.Validate(saved, "FromPretrained");
        string[] inputs = o.Sentence2ColumnName is null
            ? [o.Sentence1ColumnName]
            : [o.Sentence1ColumnName, o.Sentence2ColumnName];
        return new PeftTextTransformer(env, inputs, saved, method, null, tokenizer, baseModel, null,
            o.BatchSize ?? DefaultBatchSize, null, adapter.Trained);
    }
}
