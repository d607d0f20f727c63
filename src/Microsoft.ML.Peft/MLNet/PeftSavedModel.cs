using System.Text.Json.Serialization;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;

namespace Microsoft.ML.Peft.MLNet;

/// <summary>Everything besides tensors that rebuilds a trained stage; stored as JSON in the model header.</summary>
internal sealed class PeftSavedModel
{
    public int FormatVersion { get; set; } = 1;
    public PeftTask Task { get; set; }
    public string MethodJson { get; set; } = "";
    public string EncoderConfigJson { get; set; } = "";
    public Pooling Pooling { get; set; }
    /// <summary>How pairs reach the head; absent (cross-encoder) in models saved before bi-encoders.</summary>
    public PairEncoding PairEncoding { get; set; } = PairEncoding.CrossEncoder;
    public double HeadDropout { get; set; }
    /// <summary>The hidden layer of heads imported from RoBERTa or DistilBERT; absent (None) otherwise.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public HeadLayer HeadLayer { get; set; }
    public int NumOutputs { get; set; }
    public int MaxSequenceLength { get; set; }
    /// <summary>
    /// The long-text strategy and its options; null (and left out of the JSON) for Truncate, which is also what
    /// models saved before these options load as.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Inference.LongTextSettings? LongText { get; set; }
    public bool Merged { get; set; }
    public PeftPrecision Precision { get; set; }
    public int TokenBudget { get; set; }
    /// <summary>libtorch threads for scoring; null: libtorch's default. Absent in older models.</summary>
    public int? NumberOfThreads { get; set; }
    public KeyValueList? Labels { get; set; }
    /// <summary>The engine the stage scores with; absent (Auto) in older models.</summary>
    public ScoringEngine ScoringEngine { get; set; }
    /// <summary>Score with TorchSharp when ONNX Runtime cannot load, instead of failing.</summary>
    public bool FallbackToTorchSharp { get; set; }
    /// <summary>Regression trains on standardised targets: prediction = output × LabelScale + LabelShift.</summary>
    public double LabelShift { get; set; }
    public double LabelScale { get; set; } = 1;
    public string ScoreColumn { get; set; } = "Score";
    public string? PredictedLabelColumn { get; set; }
    public BaseModelRecord Base { get; set; } = new();
    public TextTokenizerKind TokenizerKind { get; set; }
    public string[] TokenizerFiles { get; set; } = [];
    public long TrainableParameters { get; set; }
    public long TotalParameters { get; set; }
}

/// <summary>A base model's identity in a saved stage: enough to find it again and check it is the same one.</summary>
internal sealed class BaseModelRecord
{
    public BaseModelKind Kind { get; set; }
    public string Name { get; set; } = "";
    public string Sha256 { get; set; } = "";
    public string Origin { get; set; } = "";
    public string? OriginVocabPath { get; set; }
    public bool WeightsStored { get; set; }
    public string VocabFileName { get; set; } = "vocab.txt";
    public bool DoLowerCase { get; set; }

    /// <summary>
    /// The record of <paramref name="b"/>; its weights go into the zip when <paramref name="storeWeights"/> and it
    /// is not embedded (a stored base always keeps them).
    /// </summary>
    internal static BaseModelRecord Describe(BaseModel b, bool storeWeights) => new()
    {
        Kind = b.Kind, Name = b.Name, Sha256 = b.Sha256, Origin = b.Origin, OriginVocabPath = b.OriginVocabPath,
        VocabFileName = b.VocabFileName, DoLowerCase = b.DoLowerCase,
        WeightsStored = b.Kind == BaseModelKind.Stored || (b.Kind != BaseModelKind.Embedded && storeWeights),
    };
}
