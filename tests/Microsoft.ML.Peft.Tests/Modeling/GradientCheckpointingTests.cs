using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.Full;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Modeling;

/// <summary>
/// Gradient checkpointing (<see cref="BertEncoder.GradientCheckpointing"/>, <see cref="LayerCheckpoint"/>): a training
/// step gives the same loss and gradients with and without it, dropout included; evaluation and no_grad never
/// recompute; the stage option trains and switches it off again.
/// </summary>
[TestClass]
public sealed class GradientCheckpointingTests
{
    /// <summary>Two layers, hidden 32, BERT's default dropout (0.1 on hidden states and attention
    /// probabilities).</summary>
    private static EncoderConfig Small() => new()
    {
        HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 64, VocabSize = 60,
        MaxPositionEmbeddings = 40,
        HiddenDropoutProb = 0.1, AttentionDropoutProb = 0.1,
    };

    private static PeftModel Model(PeftMethodConfig method, int seed = 5)
    {
        torch.manual_seed(seed);
        var model = PeftModel.Create(new BertModel(Small()), method, 3);
        // Move every trainable weight off its initial value (LoRA's B and the adapters' up projections start at zero,
        // which would leave their partners without a gradient).
        using (no_grad())
        using (NewDisposeScope())
            foreach (var (_, p) in model.TrainableParameters())
                p.add_(randn_like(p) * 0.05);
        model.train();
        return model;
    }

    /// <summary>3 rows of 12 tokens, the last two rows padded.</summary>
    private static (Tensor Ids, Tensor Mask, Tensor Labels) Batch()
    {
        var random = new Random(3);
        int[] lengths = [12, 9, 5];
        var ids = new long[3 * 12];
        var mask = new long[3 * 12];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < lengths[r]; c++)
            {
                ids[r * 12 + c] = random.Next(1, 60);
                mask[r * 12 + c] = 1;
            }
        return (tensor(ids, [3, 12]), tensor(mask, [3, 12]), tensor(new long[] { 0, 2, 1 }));
    }

    private sealed record StepResult(float Loss, Dictionary<string, float[]?> Grads, float NextRandom);

    /// <summary>One forward and backward pass in training mode from a fixed seed; gradients start from none.</summary>
    private static StepResult Step(PeftModel model, bool checkpoint, int seed = 11)
    {
        var (ids, mask, labels) = Batch();
        model.Encoder.encoder.GradientCheckpointing = checkpoint;
        try
        {
            foreach (var (_, p) in model.TrainableParameters()) p.grad = null;
            torch.manual_seed(seed);
            using var scope = NewDisposeScope();
            // As the trainer: the loss in float32 whatever the model computes in.
            var output = model.forward(ids, mask, null).to(ScalarType.Float32);
            var loss = nn.functional.cross_entropy(output, labels);
            loss.backward();
            model.Encoder.encoder.ThrowIfBackwardFailed();
            var grads = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad is { } g
                ? g.to(ScalarType.Float32).data<float>().ToArray() : null);
            // The generator's state after the step: the recomputation must leave it where the plain step does.
            float next = rand(1).item<float>();
            return new StepResult(loss.item<float>(), grads, next);
        }
        finally
        {
            model.Encoder.encoder.GradientCheckpointing = false;
            ids.Dispose(); mask.Dispose(); labels.Dispose();
        }
    }

    /// <summary>Largest |a − b| relative to the largest |a| (absolute below 1e-6).</summary>
    private static double RelativeDiff(float[] a, float[] b)
    {
        Assert.HasCount(a.Length, b);
        double diff = 0, scale = 0;
        for (int i = 0; i < a.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
            scale = Math.Max(scale, Math.Abs(a[i]));
        }
        return diff / Math.Max(scale, 1e-6);
    }

    private static float MaxDiff(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a - b).abs().max().item<float>();
    }

    private static void AssertSameStep(StepResult plain, StepResult checkpointed, string what)
    {
        Assert.AreEqual(plain.Loss, checkpointed.Loss, Math.Abs(plain.Loss) * 1e-5, $"{what}: loss");
        Assert.AreEqual(plain.NextRandom, checkpointed.NextRandom, $"{what}: the random state after the step differs");
        CollectionAssert.AreEquivalent(plain.Grads.Keys.ToList(), checkpointed.Grads.Keys.ToList());
        int withGradient = 0;
        foreach (var (name, expected) in plain.Grads)
        {
            var actual = checkpointed.Grads[name];
            Assert.AreEqual(expected is null, actual is null, $"{what}: {name} has a gradient in one run only");
            if (expected is null) continue;
            withGradient++;
            double rel = RelativeDiff(expected, actual!);
            Assert.IsLessThan(1e-5, rel, $"{what}: gradient of {name} differs by {rel:E2} (relative)");
        }
        Assert.IsGreaterThan(0, withGradient, $"{what}: no gradients at all");
    }

    [TestMethod]
    public void LoraGradientsAndLossMatchWithDropoutActive()
    {
        using var model = Model(new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0.1,
            TargetModules = ["query", "key", "value", "dense"] });
        var plain = Step(model, checkpoint: false);
        var checkpointed = Step(model, checkpoint: true);
        AssertSameStep(plain, checkpointed, "LoRA");
        foreach (var (name, g) in checkpointed.Grads)
            Assert.IsTrue(g is not null && g.Any(v => v != 0),
                $"{name} got no gradient through the checkpointed layers");
        Assert.IsTrue(checkpointed.Grads.Keys.Any(n => n.Contains("layer.0.", StringComparison.Ordinal)
            && n.Contains("lora_A", StringComparison.Ordinal)),
            "the lowest layer's LoRA weights train although the embeddings below them are frozen");

        // Dropout does change this step (so the equality above needed the replayed random state): another seed differs.
        var otherSeed = Step(model, checkpoint: false, seed: 12);
        Assert.AreNotEqual(plain.Loss, otherSeed.Loss);
    }

    [TestMethod]
    public void FullFineTuningGradientsReachTheEmbeddings()
    {
        using var model = Model(new FullFineTuningConfig());
        var plain = Step(model, checkpoint: false);
        var checkpointed = Step(model, checkpoint: true);
        AssertSameStep(plain, checkpointed, "full fine-tuning");
        var embedding = checkpointed.Grads["bert.embeddings.word_embeddings.weight"];
        Assert.IsTrue(embedding is not null && embedding.Any(v => v != 0), "no gradient reached the word embeddings");
        Assert.IsNotNull(checkpointed.Grads["bert.encoder.layer.0.attention.self.query.weight"]);
    }

    [TestMethod]
    public void Bf16GradientsMatch()
    {
        // What the trainer runs on CPUs with native bf16: the whole model cast to bfloat16.
        using var model = Model(new LoraConfig { Dropout = 0.1 });
        model.to(ScalarType.BFloat16);
        AssertSameStep(Step(model, checkpoint: false), Step(model, checkpoint: true), "LoRA in bf16");
    }

    public static IEnumerable<object[]> Methods => PeftMethodConfig.KnownMethods.Order(StringComparer.Ordinal)
        .Select(m => new object[] { m });

    /// <summary>
    /// Every method's hooks (adapters, prefixes shared across layers, prompts, gates, masks, quantized bases) recompute
    /// to the same values: forward passes have no side effects that a second run would change.
    /// </summary>
    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void EveryMethodGetsTheSameGradients(string method)
    {
        using var model = Model(PeftMethodConfig.FromJson("{\"method\":\"" + method + "\",\"options\":{}}"));
        AssertSameStep(Step(model, checkpoint: false), Step(model, checkpoint: true), method);
    }

    [TestMethod]
    public void RepeatedStepsDoNotAccumulateTensors()
    {
        // Full fine-tuning: every layer hands an input gradient back to libtorch, the case whose handles must be
        // released.
        using var model = Model(new FullFineTuningConfig());
        Step(model, checkpoint: true);
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++)
        {
            Step(model, checkpoint: true);
            Assert.AreEqual(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount,
                $"live tensors grew after step {i + 2}");
        }
    }

    /// <summary>Counts its forward calls and passes the input through (set as a layer's activation scale).</summary>
    private sealed class CountingIdentity(Func<int, bool>? fail = null) : nn.Module<Tensor, Tensor>("counter")
    {
        public int Calls { get; private set; }

        public override Tensor forward(Tensor input)
        {
            Calls++;
            if (fail?.Invoke(Calls) == true) throw new InvalidOperationException("recomputation failed on purpose");
            return input.alias();
        }
    }

    private static CountingIdentity Count(PeftModel model, Func<int, bool>? fail = null)
    {
        var counter = new CountingIdentity(fail);
        model.Encoder.Layers[0].intermediate.ActivationScale = counter;
        return counter;
    }

    [TestMethod]
    public void TrainingRecomputesEachLayerOnceInBackward()
    {
        using var model = Model(new LoraConfig());
        var counter = Count(model);
        Step(model, checkpoint: false);
        Assert.AreEqual(1, counter.Calls, "without checkpointing the layer runs once");
        Step(model, checkpoint: true);
        Assert.AreEqual(3, counter.Calls, "with checkpointing: once in forward, once more in backward");
    }

    [TestMethod]
    public void EvaluationAndNoGradDoNotCheckpoint()
    {
        using var model = Model(new LoraConfig());
        var counter = Count(model);
        var (ids, mask, labels) = Batch();
        using var __ = ids; using var ___ = mask; using var ____ = labels;

        // Eval mode with autograd on: the graph is the ordinary one, backward does not run the layer again.
        model.eval();
        model.Encoder.encoder.GradientCheckpointing = true;
        using (var scope = NewDisposeScope())
        {
            var checkpointFlagOn = model.forward(ids, mask, null);
            nn.functional.cross_entropy(checkpointFlagOn, labels).backward();
            Assert.AreEqual(1, counter.Calls, "eval mode must not recompute");
            model.Encoder.encoder.GradientCheckpointing = false;
            var plain = model.forward(ids, mask, null);
            Assert.AreEqual(0f, MaxDiff(checkpointFlagOn, plain), "eval output changed");
        }

        // Training mode under no_grad: a plain forward (same dropout draws), no graph.
        model.train();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            model.Encoder.encoder.GradientCheckpointing = true;
            torch.manual_seed(1);
            var flagOn = model.forward(ids, mask, null);
            model.Encoder.encoder.GradientCheckpointing = false;
            torch.manual_seed(1);
            var plain = model.forward(ids, mask, null);
            Assert.IsFalse(flagOn.requires_grad);
            Assert.AreEqual(0f, MaxDiff(flagOn, plain), "no_grad output changed");
            Assert.AreEqual(4, counter.Calls);
        }
    }

    [TestMethod]
    public void ARecomputationFailureIsReportedAfterBackward()
    {
        using var model = Model(new LoraConfig());
        // Fails on the second call: the recomputation inside backward, which runs on libtorch's autograd engine.
        Count(model, fail: calls => calls == 2);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Step(model, checkpoint: true));
        StringAssert.Contains(e.Message, "Gradient checkpointing");
        Assert.IsInstanceOfType<InvalidOperationException>(e.InnerException);
        StringAssert.Contains(e.InnerException!.Message, "on purpose");
        // Reported once; the next step works again.
        model.Encoder.encoder.ThrowIfBackwardFailed();
        var again = Step(model, checkpoint: true);
        Assert.IsTrue(float.IsFinite(again.Loss));
    }

    [TestMethod]
    public void StageTrainsWithCheckpointingAsWithout()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label")
            .Fit(StageTestData.Load(ml, StageTestData.Negation(48, 1)))
            .Transform(StageTestData.Load(ml, StageTestData.Negation(48, 1)));
        var messages = new List<string>();
        PeftTextTransformer Train(bool checkpoint)
        {
            var context = new MLContext(7);
            // Through reflection: the publicized ML.NET reference makes 'ml.Log' ambiguous at compile time.
            if (checkpoint)
                typeof(MLContext).GetEvent("Log")!.AddEventHandler(context,
                    new EventHandler<LoggingEventArgs>((_, e) => { lock (messages) messages.Add(e.Message); }));
            return context.Peft().TextClassification(new PeftTextClassificationOptions
            {
                LabelColumnName = "Label", Sentence1ColumnName = "Text", Epochs = 2, BatchSize = 16,
                MaxSequenceLength = 16,
                BaseModel = BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")),
                LearningRate = 1e-2,
                Precision = Peft.Training.PeftPrecision.Float32, Method = new LoraConfig { Dropout = 0.1 },
                GradientCheckpointing = checkpoint,
            }).Fit(data);
        }

        using var checkpointed = Train(checkpoint: true);
        Assert.IsTrue(messages.Any(m => m.Contains("Gradient checkpointing: on", StringComparison.Ordinal)),
            "the option is not logged");
        Assert.IsTrue(double.IsFinite(checkpointed.TrainingReport!.FinalTrainLoss));
        Assert.IsFalse(checkpointed.Model.Encoder.encoder.GradientCheckpointing, "scoring must not checkpoint");
        var scores = checkpointed.Transform(data).GetColumn<float[]>("Score").ToArray();
        Assert.HasCount(48, scores);
        Assert.IsTrue(scores.All(s => s.Length == 2 && s.All(float.IsFinite)));

        // Same seed without checkpointing: the same dropout draws, so the same weights and scores.
        using var plain = Train(checkpoint: false);
        var plainScores = plain.Transform(data).GetColumn<float[]>("Score").ToArray();
        double maxDiff = scores.Zip(plainScores, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
        Assert.IsLessThan(1e-4, maxDiff, $"scores differ by {maxDiff:E2}");
        Assert.AreEqual(plain.TrainingReport!.FinalTrainLoss, checkpointed.TrainingReport.FinalTrainLoss, 1e-4);
    }
}
