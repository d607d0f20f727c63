using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tests.Modeling;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.Training;

[TestClass]
public sealed class TrainerTests
{
    [TestMethod]
    public void TrainingBatchesCoverEveryRowOnceAndRespectBudgets()
    {
        var rng = new Random(7);
        var lengths = Enumerable.Range(0, 1000).Select(_ => rng.Next(3, 120)).ToArray();
        var batches = BatchPlanner.ForTraining(lengths, 32, 1024, new Random(1));
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 1000).ToArray(), batches.SelectMany(b => b).ToArray());
        foreach (var b in batches)
        {
            Assert.IsLessThanOrEqualTo(32, b.Length);
            Assert.IsLessThanOrEqualTo(1024, b.Length * b.Max(i => lengths[i]));
        }
        var scoring = BatchPlanner.ForScoring(lengths, 16, 0);
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 1000).ToArray(), scoring.SelectMany(b => b).ToArray());
        // Length bucketing must keep padding far below random batching's.
        long padded = batches.Sum(b => (long)b.Length * b.Max(i => lengths[i]));
        Assert.IsLessThan(1.15 * lengths.Sum(), padded);
    }

    [TestMethod]
    public void SameSeedSameBatches()
    {
        var lengths = Enumerable.Range(0, 300).Select(i => i % 17 + 2).ToArray();
        var a = BatchPlanner.ForTraining(lengths, 8, 0, new Random(3)).SelectMany(b => b).ToArray();
        var b = BatchPlanner.ForTraining(lengths, 8, 0, new Random(3)).SelectMany(b => b).ToArray();
        var c = BatchPlanner.ForTraining(lengths, 8, 0, new Random(4)).SelectMany(b => b).ToArray();
        CollectionAssert.AreEqual(a, b);
        CollectionAssert.AreNotEqual(a, c);
    }

    [TestMethod]
    public void ScheduleWarmsUpThenDecays()
    {
        Assert.AreEqual(0.25, PeftTrainer.Schedule(0, 4, 100), 1e-12);
        Assert.AreEqual(1.0, PeftTrainer.Schedule(3, 4, 100), 1e-12);
        Assert.AreEqual(0.5, PeftTrainer.Schedule(52, 4, 100), 1e-12);
        Assert.AreEqual(0.0, PeftTrainer.Schedule(100, 4, 100), 1e-12);
    }

    [TestMethod]
    public void TimedScheduleFollowsWhicheverIsFurtherAlongStepsOrTime()
    {
        // Warm-up: the first step is never a zero-rate step, then time drives it (3% of a 6% warm-up is half way).
        Assert.AreEqual(1.0 / 60, PeftTrainer.TimedSchedule(0, 60, 1000, 0.0, 0.06), 1e-12);
        Assert.AreEqual(0.5, PeftTrainer.TimedSchedule(1, 60, 1000, 0.03, 0.06), 1e-12);
        // Decay by time when time is ahead of steps, by steps when steps are ahead of time.
        Assert.AreEqual(0.5 / 0.94, PeftTrainer.TimedSchedule(10, 60, 1000, 0.5, 0.06), 1e-12);
        Assert.AreEqual(0.2 / 0.94, PeftTrainer.TimedSchedule(800, 60, 1000, 0.1, 0.06), 1e-12);
        // At and past the deadline the rate is zero.
        Assert.AreEqual(0.0, PeftTrainer.TimedSchedule(10, 60, 1000, 1.0, 0.06), 1e-12);
        Assert.AreEqual(0.0, PeftTrainer.TimedSchedule(10, 60, 1000, 1.7, 0.06), 1e-12);
        Assert.AreEqual(0.9, PeftTrainer.TimedSchedule(10, 0, 1000, 0.1, 0.0), 1e-12);
    }

    internal static List<Example> Synthetic(int n, int seed)
    {
        // Label 1 when token 5 comes before token 6, else 0: a word-order rule, both tokens always present.
        var rng = new Random(seed);
        var rows = new List<Example>();
        for (int i = 0; i < n; i++)
        {
            int len = rng.Next(4, 10);
            var ids = new int[len + 2];
            ids[0] = 2; ids[^1] = 3;
            for (int t = 1; t <= len; t++) ids[t] = rng.Next(10, 40);
            int a = rng.Next(1, len + 1), b;
            do b = rng.Next(1, len + 1); while (b == a);
            ids[a] = 5; ids[b] = 6;
            rows.Add(new Example(new TokenizedText(ids, new int[ids.Length], len, 0), a < b ? 1 : 0));
        }
        return rows;
    }

    [TestMethod]
    public void LearnsWordOrderAndKeepsBestEpoch()
    {
        torch.manual_seed(11);
        using var model = PeftModel.Create(new BertModel(BertModelTests.Tiny()),
            new LoraConfig { Rank = 4, TargetModules = [LoraConfig.AllLinear], Dropout = 0 }, 2, Pooling.Cls, 0);
        var settings = new TrainingSettings { BatchSize = 16, Epochs = 8, LearningRate = 5e-3, Seed = 1,
            Task = PeftTask.Classification, WarmupRatio = 0.05 };
        var trainer = new PeftTrainer(model, settings, 0, torch.CPU);
        var train = Synthetic(400, 1);
        var valid = Synthetic(100, 2);
        double before = trainer.Evaluate(valid);
        var reports = new List<TrainingProgress>();
        var report = trainer.Train(train, valid, reports.Add, () => { }, CancellationToken.None);
        double after = trainer.Evaluate(valid);
        Assert.IsGreaterThan(0.85, after, $"accuracy before {before:F3}, after {after:F3}");
        Assert.AreEqual(report.BestValidationMetric!.Value, after, 1e-9,
            "the best epoch's weights must be the ones kept");
        Assert.IsTrue(reports.Any(r => r.ValidationMetric is not null));
        Assert.IsGreaterThan(0, report.TokensPerSecond);
    }

    [TestMethod]
    public void EqualValidationAccuracyKeepsTheEpochWithTheLowerCrossEntropy()
    {
        torch.manual_seed(13);
        using var model =
            PeftModel.Create(new BertModel(BertModelTests.Tiny()), new LoraConfig { Rank = 4 }, 2, Pooling.Cls, 0);
        var trainer = new PeftTrainer(model, new TrainingSettings { BatchSize = 16, Epochs = 6, LearningRate = 2e-3,
            Seed = 1, Task = PeftTask.Classification }, 0, torch.CPU);
        // One text with a 90% prior for class 1: every epoch that predicts class 1 is right on all the validation rows,
        // and each one moves the probability closer to the prior, lowering the cross-entropy.
        static Example Row(int label) => new(new TokenizedText([2, 10, 11, 3], new int[4], 2, 0), label);
        var train = Enumerable.Range(0, 200).Select(i => Row(i % 10 == 0 ? 0 : 1)).ToList();
        var valid = Enumerable.Range(0, 40).Select(_ => Row(1)).ToList();
        var reports = new List<TrainingProgress>();
        var report = trainer.Train(train, valid, reports.Add, () => { }, CancellationToken.None);
        var accuracies = reports.Where(r => r.ValidationMetric is not null).Select(r => r.ValidationMetric!.Value)
            .ToList();
        Assert.AreEqual(6, accuracies.Count);
        Assert.IsTrue(accuracies[^1] == 1.0 && accuracies[^2] == 1.0,
            $"the last epochs tie: {string.Join(", ", accuracies)}");
        Assert.AreEqual(6, report.BestEpoch, "the later of tied epochs learned more of the prior");
    }

    [TestMethod]
    public void CancellationStopsTraining()
    {
        torch.manual_seed(12);
        using var model = PeftModel.Create(new BertModel(BertModelTests.Tiny()), new LoraConfig(), 2);
        var trainer = new PeftTrainer(model,
            new TrainingSettings { Epochs = 50, BatchSize = 4, Task = PeftTask.Classification }, 0, torch.CPU);
        using var cts = new CancellationTokenSource();
        int steps = 0;
        Assert.ThrowsExactly<OperationCanceledException>(() =>
            trainer.Train(Synthetic(200, 3), null, null, () => { if (++steps == 5) cts.Cancel(); }, cts.Token));
        Assert.AreEqual(5, steps);
    }
}
