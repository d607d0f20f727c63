using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.ChildTuning;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Training;
using TorchSharp;
using static Microsoft.ML.Peft.Tests.Methods.PartialMethodsTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class ChildTuningTests
{
    /// <summary>
    /// Runs forward and backward on a fixed small batch with fixed labels, as the trainer's probe does on training
    /// data.
    /// </summary>
    private sealed class BatchProbe(PeftModel model) : ITrainingProbe
    {
        public int AccumulateGradients(int maxBatches)
        {
            var (ids, mask) = Batch();
            for (int i = 0; i < maxBatches; i++)
            {
                using var scope = NewDisposeScope();
                nn.functional.cross_entropy(model.forward(ids, mask, null), tensor(new long[] { 0, 1 })).backward();
            }
            return maxBatches;
        }
    }

    [TestMethod]
    public void MaskKeepsTheReserveRatioOfEncoderWeightsOnMiniLmShape()
    {
        var config = new ChildTuningConfig { FisherBatches = 2 };
        using var model = PeftModel.Create(Encoder(3, MiniLm), config, 2);
        // Every encoder weight has requires_grad (the count reported, and what a saved model holds) ...
        long encoder = 22_565_376; // embeddings 11,918,592 + 6 × 1,774,464
        Assert.AreEqual(encoder + MiniLmHead, model.CountParameters().Trainable);
        // ... but the child network holds round(ReserveRatio · encoder weights) of them: 6,769,613 for 0.3.
        model.train();
        config.OnTrainingStart(model, new BatchProbe(model));
        var mask = config.Mask!;
        Assert.AreEqual(encoder, mask.Total);
        Assert.AreEqual((long)Math.Round(0.3 * encoder), mask.Kept);
        var masks = mask.Masks();
        Assert.AreEqual(mask.Kept, masks.Values.Sum(m => m.sum().item<long>()));
        // Rows of tokens the batches never use have zero Fisher information, so they stay out.
        Assert.IsFalse(masks["bert.embeddings.word_embeddings.weight"][1000].any().item<bool>());
        // After a backward pass the gradient hook leaves gradients only inside the child network.
        model.zero_grad();
        new BatchProbe(model).AccumulateGradients(1);
        config.OnAfterBackward(model);
        long inside = 0;
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("bert.")))
        {
            using var nonzero = p.grad!.ne(0);
            Assert.IsFalse((nonzero & ~masks[name]).any().item<bool>(),
                $"{name} has gradient outside the child network");
            inside += nonzero.sum().item<long>();
        }
        Assert.IsGreaterThan(0.5 * mask.Kept, (double)inside);
        foreach (var m in masks.Values) m.Dispose();
        config.PrepareForInference(model);
        Assert.IsNull(config.Mask, "the masks are only kept while training");
    }

    [TestMethod]
    public void WeightsOutsideTheChildNetworkDoNotChange()
    {
        torch.manual_seed(11);
        var config = new ChildTuningConfig { ReserveRatio = 0.25, FisherBatches = 4 };
        using var model = PeftModel.Create(new BertModel(Modeling.BertModelTests.Tiny()), config, 2, Pooling.Cls);
        var start = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        // Weight decay on, as by default: AdamW would shrink masked-out weights unless the method puts them back.
        var settings = new TrainingSettings { BatchSize = 16, Epochs = 2, LearningRate = 1e-2, WeightDecay = 0.1,
            Seed = 1, Task = PeftTask.Classification };
        new PeftTrainer(model, settings, 0, torch.CPU).Train(Training.TrainerTests.Synthetic(96, 1), null, null,
            () => { }, default);

        var masks = config.Mask!.Masks();
        long kept = 0, changedInside = 0, total = 0;
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("bert.")))
        {
            using var m = masks[name];
            using var changed = p.detach().ne(start[name]);
            Assert.IsFalse((changed & ~m).any().item<bool>(), $"{name} changed outside the child network");
            changedInside += (changed & m).sum().item<long>();
            kept += m.sum().item<long>();
            total += p.numel();
        }
        Assert.AreEqual((long)Math.Round(0.25 * total), kept);
        Assert.IsGreaterThan(0.9 * kept, (double)changedInside, "the child network must train");
        Assert.IsFalse(start["classifier.weight"].allclose(model.classifier.weight!, 0, 0), "the head trains unmasked");
        foreach (var t in start.Values) t.Dispose();
    }

    [TestMethod]
    public void OptionsValidateAndRoundTripThroughJson()
    {
        var r = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ChildTuningConfig {
            ReserveRatio = 0 }.Validate());
        StringAssert.Contains(r.Message, "ReserveRatio");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ChildTuningConfig {
            ReserveRatio = 1.5 }.Validate());
        var f = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ChildTuningConfig {
            FisherBatches = 0 }.Validate());
        StringAssert.Contains(f.Message, "FisherBatches");
        var back = (ChildTuningConfig)PeftMethodConfig.FromJson(new ChildTuningConfig { ReserveRatio = 0.1,
            FisherBatches = 8 }.ToJson());
        Assert.AreEqual(0.1, back.ReserveRatio);
        Assert.AreEqual(8, back.FisherBatches);
    }
}
