using Microsoft.ML.Peft.Methods;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>How token states become one vector per row for the task head.</summary>
public enum Pooling
{
    /// <summary>The checkpoint's pooler when it has one, else <see cref="Mean"/>.</summary>
    Auto,
    /// <summary>The first token's state ([CLS] / &lt;s&gt;).</summary>
    Cls,
    /// <summary>Mean over non-padding tokens (how sentence-transformers models were trained).</summary>
    Mean,
    /// <summary>The checkpoint's pooler (dense + tanh over [CLS]).</summary>
    Pooler,
}

/// <summary>
/// An encoder with a task head: <c>bert</c> (the <see cref="BertModel"/>), <c>dropout</c> and <c>classifier</c>,
/// named as Hugging Face's <c>BertForSequenceClassification</c>. A <see cref="PeftMethodConfig"/> attaches to it.
/// For regression the head has one output.
/// </summary>
public sealed class PeftModel : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    internal readonly BertModel bert;
    internal readonly Dropout dropout;
    internal readonly Linear classifier;
    internal readonly Linear? pre_classifier;

    /// <summary>The hidden layer before the classifier (<see cref="HeadLayer.None"/> for BERT's head).</summary>
    public HeadLayer HeadLayer { get; }

    /// <summary>Resolved pooling (never <see cref="Pooling.Auto"/>).</summary>
    public Pooling Pooling { get; }

    /// <summary>Number of head outputs: classes, or 1 for regression.</summary>
    public int NumOutputs { get; }

    /// <summary>How sentence pairs are encoded (never <see cref="PairEncoding.Auto"/>).</summary>
    public PairEncoding PairEncoding { get; }

    private readonly PeftMethodConfig _method;

    // Wraps the encoder (which this model now owns) with a fresh head; a bi-encoder head reads four pooled vectors.
    private PeftModel(BertModel encoder, PeftMethodConfig method, int numOutputs, Pooling pooling, double headDropout,
        PairEncoding pairEncoding, HeadLayer headLayer) : base("model")
    {
        _method = method;
        if (numOutputs < 1) throw new ArgumentOutOfRangeException(nameof(numOutputs));
        bert = encoder;
        Pooling = pooling == Pooling.Auto ? (encoder.HasPooler ? Pooling.Pooler : Pooling.Mean) : pooling;
        if (Pooling == Pooling.Pooler && !encoder.HasPooler)
            throw new ArgumentException(
                "Pooling 'Pooler' needs a checkpoint with a pooler; this base model has none. Use Cls or Mean.");
        NumOutputs = numOutputs;
        PairEncoding = pairEncoding == PairEncoding.Auto
            ? throw new ArgumentException("Resolve PairEncoding.Auto before building the model.", nameof(pairEncoding))
            : pairEncoding;
        dropout = nn.Dropout(headDropout);
        int features = PairEncoding == PairEncoding.BiEncoder ? 4 : 1;
        classifier = nn.Linear(features * encoder.Config.HiddenSize, numOutputs);
        HeadLayer = headLayer;
        if (headLayer != HeadLayer.None)
        {
            if (features != 1)
                throw new ArgumentException("A head layer reads one pooled vector; bi-encoded pairs have four.");
            pre_classifier = nn.Linear(encoder.Config.HiddenSize, encoder.Config.HiddenSize);
        }
        using (no_grad())
        {
            // Hugging Face's initializer_range: N(0, 0.02) weights, zero bias.
            foreach (var linear in new[] { classifier, pre_classifier })
            {
                if (linear is null) continue;
                nn.init.normal_(linear.weight!, 0, 0.02);
                nn.init.zeros_(linear.bias!);
            }
        }
        RegisterComponents();
    }

    /// <summary>
    /// Wraps <paramref name="encoder"/> with a head, attaches <paramref name="method"/> and marks what trains
    /// (the method's parameters and the head).
    /// </summary>
    public static PeftModel Create(BertModel encoder, PeftMethodConfig method, int numOutputs,
        Pooling pooling = Pooling.Auto, double headDropout = 0.1, PairEncoding pairEncoding = PairEncoding.CrossEncoder,
        HeadLayer headLayer = HeadLayer.None)
    {
        method.Validate();
        var model = new PeftModel(encoder, method, numOutputs, pooling, headDropout, pairEncoding, headLayer);
        method.Attach(model);
        model.ApplyTrainability();
        return model;
    }

    /// <summary>
    /// Rebuilds a trained model's structure for loading saved tensors: attach, then the method's inference form
    /// (e.g. prefixes with their reparameterisation folded away).
    /// </summary>
    internal static PeftModel CreateForInference(BertModel encoder, PeftMethodConfig method, int numOutputs,
        Pooling pooling, double headDropout, PairEncoding pairEncoding, HeadLayer headLayer = HeadLayer.None)
    {
        var model = Create(encoder, method, numOutputs, pooling, headDropout, pairEncoding, headLayer);
        model.PrepareForInference();
        return model;
    }

    /// <summary>The method attached to this model. The model owns it: attaching, the inference form, merging and
    /// casting go through the model, so the two never drift apart.</summary>
    internal PeftMethodConfig Method => _method;

    /// <summary>The method's inference form (e.g. prefixes with their reparameterisation folded away).</summary>
    internal void PrepareForInference() => _method.PrepareForInference(this);

    /// <summary>
    /// Folds the method's update into the base weights when it can; false when the method cannot merge.
    /// </summary>
    internal bool Merge() => _method.Merge(this);

    /// <summary>Casts every weight to <paramref name="type"/> (bf16 compute, float32 for merging and saving).
    /// Replaces the parameter objects: look them up again after.</summary>
    internal void CastTo(ScalarType type) => this.to(type);

    /// <summary>
    /// Float32 managed copies (what a save writes) of the tensors that trained (the method's and the head's), by
    /// their full names.
    /// </summary>
    internal Dictionary<string, Onnx.FloatTensor> CopyTrainedTensors()
    {
        using var _ = no_grad();
        return Onnx.TorchWeights.ToManaged(named_parameters()
            .Where(p => IsHeadParameter(p.name) || _method.IsTrainable(p.name))
            .ToDictionary(p => p.name, p => (Tensor)p.parameter));
    }

    /// <summary>
    /// Copies saved tensors (from <see cref="CopyTrainedTensors"/>) into the model, checking names and shapes.
    /// </summary>
    internal void LoadTrainedTensors(IReadOnlyDictionary<string, Tensor> trained)
    {
        var parameters = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var missing = trained.Keys.Where(k => !parameters.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new MLNet.PeftModelFormatException(
                $"The saved model holds tensors its method does not create: {string.Join(", ", missing.Take(5))}.");
        using var _ = no_grad();
        foreach (var (name, t) in trained)
        {
            var p = parameters[name];
            if (!p.shape.SequenceEqual(t.shape))
                throw new MLNet.PeftModelFormatException(
                    $"Saved tensor '{name}' has shape [{string.Join(",", t.shape)}], " +
                    $"the model expects [{string.Join(",", p.shape)}].");
            p.copy_(t);
        }
    }

    /// <summary>The encoder.</summary>
    public BertModel Encoder => bert;

    /// <summary>Returns the head's raw outputs (logits, or the regression value) [batch, outputs].</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask, Tensor? tokenTypeIds)
    {
        using var scope = NewDisposeScope();
        var pooled = PairEncoding == PairEncoding.BiEncoder && tokenTypeIds is not null
            ? PairFeatures(inputIds, attentionMask, tokenTypeIds)
            : Encode(inputIds, attentionMask, tokenTypeIds);
        pooled = HeadLayer switch
        {
            HeadLayer.DenseTanh => pre_classifier!.forward(dropout.forward(pooled)).tanh(),
            HeadLayer.DenseRelu => nn.functional.relu(pre_classifier!.forward(pooled)),
            _ => pooled,
        };
        return classifier.forward(dropout.forward(pooled)).MoveToOuterDisposeScope();
    }

    private Tensor Encode(Tensor inputIds, Tensor attentionMask, Tensor? tokenTypeIds)
    {
        var hidden = bert.forward(inputIds, attentionMask, tokenTypeIds);
        if (bert.PromptIsPooled)
            // peft's layout: the virtual tokens are part of the sequence transformers pools (its first position).
            attentionMask = cat([ones(inputIds.shape[0], bert.PromptLength, dtype: attentionMask.dtype,
                device: attentionMask.device), attentionMask], 1);
        // Otherwise virtual prompt tokens are not part of the text: pool over the real positions only.
        else if (bert.PromptLength > 0) hidden = hidden[.., bert.PromptLength..];
        return Pool(hidden, attentionMask);
    }

    /// <summary>
    /// Splits the collated <c>[CLS] a [SEP] b [SEP]</c> rows into <c>[CLS] a [SEP]</c> and <c>[CLS] b [SEP]</c>,
    /// encodes both halves in one batch (each as if alone: own positions, token type 0) and returns
    /// <c>[u, v, |u − v|, u ∗ v]</c>. Single-sentence rows (no type-1 token) get v = the [CLS]-only encoding, so
    /// they still score.
    /// </summary>
    private Tensor PairFeatures(Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds)
    {
        long rows = inputIds.shape[0], length = inputIds.shape[1];
        var real = attentionMask.gt(0);
        var second = tokenTypeIds.eq(1).logical_and(real);
        var firstMask = real.logical_and(second.logical_not());
        // Move the second sentence's tokens to the front, in order, behind the first [CLS].
        var positions = arange(length, device: inputIds.device).unsqueeze(0).expand(rows, length);
        var order = where(second, positions, positions + length).argsort(1);
        var secondIds = cat([inputIds[.., ..1], inputIds.gather(1, order)[.., ..(int)(length - 1)]], 1);
        var secondLength = second.sum(1, keepdim: true) + 1;
        var secondMask = positions.lt(secondLength);
        long used = Math.Max(firstMask.sum(1).max().item<long>(), secondLength.max().item<long>());
        var ids = cat([inputIds[.., ..(int)used], secondIds[.., ..(int)used]], 0);
        var mask = cat([firstMask[.., ..(int)used], secondMask[.., ..(int)used]], 0).to(attentionMask.dtype);
        var pooled = Encode(ids, mask, zeros_like(ids));
        var u = pooled[..(int)rows];
        var v = pooled[(int)rows..];
        return cat([u, v, (u - v).abs(), u * v], 1);
    }

    private Tensor Pool(Tensor hidden, Tensor attentionMask) => Pooling switch
    {
        Pooling.Cls => hidden[.., 0],
        Pooling.Pooler => bert.Pool(hidden),
        _ => MeanPool(hidden, attentionMask),
    };

    internal static Tensor MeanPool(Tensor hidden, Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        var m = attentionMask.unsqueeze(-1).to(hidden.dtype);
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)).MoveToOuterDisposeScope();
    }

    /// <summary>Parameters that train (requires_grad), with their names.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters() =>
        named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter));

    /// <summary>Counts trainable and total parameters, as <c>peft</c>'s <c>print_trainable_parameters</c>.</summary>
    public (long Trainable, long Total) CountParameters()
    {
        long trainable = 0, total = 0;
        foreach (var (_, p) in named_parameters())
        {
            total += p.numel();
            if (p.requires_grad) trainable += p.numel();
        }
        // Weights held packed in buffers (QLoRA's 4-bit base) are still the model's parameters.
        foreach (var (_, m) in ModuleSurgery.NamedModules(this))
            if (m is IPackedWeights packed) total += packed.LogicalParameterCount;
        return (trainable, total);
    }

    /// <summary>Freezes everything, then unfreezes what the method trains plus the head.</summary>
    internal void ApplyTrainability()
    {
        foreach (var (name, p) in named_parameters())
            p.requires_grad = IsHeadParameter(name) || _method.IsTrainable(name);
    }

    /// <summary>Freezes every weight: a model that only scores.</summary>
    internal void Freeze()
    {
        eval();
        foreach (var (_, p) in named_parameters()) p.requires_grad = false;
    }

    /// <summary>True for the task head's parameters (<c>classifier.*</c>, <c>pre_classifier.*</c>), which always
    /// train.</summary>
    internal static bool IsHeadParameter(string name) => name.StartsWith("classifier.", StringComparison.Ordinal)
        || name.StartsWith("pre_classifier.", StringComparison.Ordinal);
}

/// <summary>
/// A module whose frozen weights are stored packed in buffers (e.g. quantized), so they are not parameters.
/// </summary>
internal interface IPackedWeights
{
    /// <summary>How many weights the buffers stand for.</summary>
    long LogicalParameterCount { get; }
}
