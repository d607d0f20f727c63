using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Methods.Lora;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Runtime;
using Microsoft.ML.Peft.Tests.Modeling;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Tests.Training;

[TestClass]
public sealed class MemoryBudgetTests
{
    private const long MiB = 1L << 20;

    [TestMethod]
    public void StatusLinesParseWithAndWithoutASpaceAfterTheTab()
    {
        // Linux pads the value to eight columns: an eight-digit value follows the tab directly.
        Assert.AreEqual(12_345_678L * 1024, ProcessMemory.ParseKiloBytes("VmHWM:\t12345678 kB"));
        Assert.AreEqual(123_456L * 1024, ProcessMemory.ParseKiloBytes("VmRSS:\t  123456 kB"));
        Assert.IsNull(ProcessMemory.ParseKiloBytes("VmRSS:"));
        if (OperatingSystem.IsLinux()) Assert.IsGreaterThan(0L, ProcessMemory.Resident()!.Value);
    }

    [TestMethod]
    public void TheProcessPeakSurvivesAMeasurementsReset()
    {
        if (!OperatingSystem.IsLinux()) Assert.Inconclusive("/proc is Linux's.");
        long peak = ProcessMemory.Peak()!.Value;
        Assert.IsTrue(ProcessMemory.TryResetPeak(), "clear_refs must be writable by the process itself");
        Assert.IsGreaterThanOrEqualTo(peak, ProcessMemory.Peak()!.Value);
        long sinceReset = ProcessMemory.PeakSinceReset()!.Value; // read first: memory may grow meanwhile
        Assert.IsGreaterThanOrEqualTo(sinceReset, ProcessMemory.Peak()!.Value);
    }

    [TestMethod]
    public void TheDefaultBudgetIsAQuarterOfWhatIsAvailableWithinItsBounds()
    {
        Assert.AreEqual(3L << 30, MemoryPlanner.DefaultBudget(24L << 30), "capped at 3 GiB");
        Assert.AreEqual(2L << 30, MemoryPlanner.DefaultBudget(8L << 30));
        Assert.AreEqual(512 * MiB, MemoryPlanner.DefaultBudget(1L << 30), "at least 512 MiB");
    }

    [TestMethod]
    public void RowsThatFitAreWhatTheBudgetLeavesOverTheCostOfARow()
    {
        // 1,000 MiB × 0.85 headroom = 850; minus 300 in use and 50 fixed leaves 500: 12 rows of 40 MiB.
        Assert.AreEqual(12, MemoryPlanner.RowsThatFit(1000 * MiB, 300 * MiB, 50 * MiB, 40 * MiB));
        Assert.AreEqual(0, MemoryPlanner.RowsThatFit(1000 * MiB, 900 * MiB, 0, 40 * MiB));
        Assert.AreEqual(int.MaxValue, MemoryPlanner.RowsThatFit(1000 * MiB, 0, 0, 0));
    }

    [TestMethod]
    public void TheEstimateOfARowMatchesKorthikantisCount()
    {
        // MiniLM (6 layers, 384 wide, 12 heads) at 512 tokens in float32: (34·512·384 + 5·12·512²) · 2 bytes a layer.
        var miniLm = new EncoderConfig();
        long layer = (34L * 512 * 384 + 5L * 12 * 512 * 512) * 2;
        Assert.AreEqual(6 * layer, MemoryPlanner.EstimateBytesPerRow(miniLm, 512, 4, checkpointing: false));
        Assert.AreEqual(layer + 6L * 512 * 384 * 4,
            MemoryPlanner.EstimateBytesPerRow(miniLm, 512, 4, checkpointing: true));
    }

    [TestMethod]
    public void TheFusedKernelComesBeforeCheckpointingAndEachOnlyWhereItFitsMore()
    {
        // Rows per pass a fake model fits: 2 as it is, 6 with the fused kernel, 20 with checkpointing too.
        var asked = new List<(bool, bool)>();
        TrainingMemoryPlan Measure(bool fused, bool checkpointing)
        {
            asked.Add((fused, checkpointing));
            int rows = (fused, checkpointing) switch { (false, false) => 2, (true, false) => 6, (false, true) => 3,
                _ => 20 };
            return new TrainingMemoryPlan(1L << 30, 0, 1, 0, 512, 32, rows, (32 + rows - 1) / rows, checkpointing,
                true) { FusedAttention = fused };
        }
        var plan = MemoryPlanner.Decide(Measure, 32, fusedAllowed: true, checkpointing: false);
        Assert.IsTrue(plan.FusedAttention);
        Assert.IsFalse(plan.GradientCheckpointing, "6 rows per pass are enough: no recomputation");
        Assert.AreEqual(6, plan.RowsPerPass);
        CollectionAssert.AreEqual(new[] { (false, false), (true, false) }, asked);

        asked.Clear();
        plan = MemoryPlanner.Decide(Measure, 32, fusedAllowed: false, checkpointing: false);
        Assert.IsFalse(plan.FusedAttention, "the options set the attention dropout: it stays");
        Assert.IsTrue(plan.GradientCheckpointing);
        Assert.AreEqual(3, plan.RowsPerPass);

        asked.Clear();
        plan = MemoryPlanner.Decide(Measure, 2, fusedAllowed: true, checkpointing: false);
        Assert.AreEqual(1, asked.Count, "a batch of 2 fits as it is: nothing else is tried");
        Assert.IsFalse(plan.FusedAttention || plan.GradientCheckpointing);
    }

    [TestMethod]
    public void ScoringBatchesShrinkOnlyWhenTheBudgetIsTight()
    {
        // A MiniLM row of 512 tokens: 4 bytes × (2·12·512² + 6·512·384 + 2·512·1536) = 36,175,872 bytes.
        var miniLm = new EncoderConfig();
        Assert.AreEqual(0, MemoryPlanner.ScoringTokenBudget(miniLm, 512, 32, 3L << 30), "32 rows fit 3 GiB");
        // 256 MiB × 0.85 holds 6 such rows.
        Assert.AreEqual(6 * 512, MemoryPlanner.ScoringTokenBudget(miniLm, 512, 32, 256 * MiB));
        Assert.AreEqual(512, MemoryPlanner.ScoringTokenBudget(miniLm, 512, 32, 1 * MiB), "never below one row");
    }

    [TestMethod]
    public void PassesSplitEveryRowOnceWithinTheirLimits()
    {
        int[] lengths = [10, 4, 30, 7, 12, 30];
        var passes = BatchPlanner.Split([0, 1, 2, 3, 4, 5], lengths, rows: 2, tokenBudget: 40);
        CollectionAssert.AreEquivalent(new[] { 0, 1, 2, 3, 4, 5 }, passes.SelectMany(p => p).ToArray());
        foreach (var p in passes)
        {
            Assert.IsLessThanOrEqualTo(2, p.Length);
            Assert.IsLessThanOrEqualTo(40, p.Length * p.Max(i => lengths[i]));
        }
        // Shortest first: 4 and 7, then 10 and 12, then each 30 alone (two would be 60 tokens).
        Assert.AreEqual(4, passes.Count);
        CollectionAssert.AreEqual(new[] { 1, 3 }, passes[0]);
    }

    [TestMethod]
    public void AccumulatedPassesGiveTheWholeBatchsGradient()
    {
        var rows = TrainerTests.Synthetic(12, 5);
        int[] batch = Enumerable.Range(0, rows.Count).ToArray();
        torch.manual_seed(3);
        using var model = DropoutFreeModel();
        var trainer = new PeftTrainer(model, Settings(), 0, torch.CPU);
        model.train();
        var (wholeLoss, wholeTokens) = trainer.Backward(rows, batch);
        var whole = Gradients(model);
        foreach (var p in model.parameters()) p.grad?.zero_();
        trainer.LimitPasses(rows: 5, tokens: 0);
        var (splitLoss, splitTokens) = trainer.Backward(rows, batch);
        var split = Gradients(model);
        Assert.AreEqual(wholeLoss, splitLoss, 1e-5);
        Assert.AreEqual(wholeTokens, splitTokens);
        // LoRA's A gets no gradient while B is zero; B and the head do.
        Assert.IsGreaterThan(0.0,
            whole.Where(g => g.Key.Contains("lora_B")).Sum(g => g.Value.abs().sum().item<float>()));
        foreach (var (name, g) in whole) Assert.IsTrue(g.allclose(split[name], rtol: 1e-4, atol: 1e-6), name);
    }

    [TestMethod]
    public void ASmallBudgetShrinksThePassAndTrainsTheSameSteps()
    {
        var rows = TrainerTests.Synthetic(64, 9);
        long now = ProcessMemory.Resident() ?? 0;
        // No budget; a budget this fit has already spent (one row per pass); a budget far above the need.
        var (free, freeWeights) = Fit(rows, null, 0);
        var (tight, tightWeights) = Fit(rows, 64 * MiB, now - 64 * MiB);
        var (roomy, _) = Fit(rows, 1L << 40, now);

        Assert.IsNull(free.Memory);
        var t = tight.Memory!;
        Assert.AreEqual(1, t.RowsPerPass);
        Assert.AreEqual(16, t.AccumulationSteps);
        Assert.IsTrue(t.OverBudget);
        Assert.AreEqual(roomy.Memory!.BatchSize, roomy.Memory.RowsPerPass);
        Assert.AreEqual(1, roomy.Memory.AccumulationSteps);
        Assert.IsFalse(roomy.Memory.GradientCheckpointing);
        if (OperatingSystem.IsLinux()) Assert.IsTrue(roomy.Memory.Measured);
        // The same optimizer steps: one pass per batch or sixteen, the trained weights agree.
        foreach (var (name, w) in freeWeights)
            Assert.IsTrue(w.allclose(tightWeights[name], rtol: 1e-3, atol: 1e-5), name);
        Assert.AreEqual(free.BestValidationMetric!.Value, tight.BestValidationMetric!.Value, 1e-9);
    }

    [TestMethod]
    public void TheBudgetOptionIsCheckedByName()
    {
        var o = new PeftTextClassificationOptions { MaxTrainingMemory = 1000 };
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(o.Validate);
        StringAssert.Contains(e.Message, "MaxTrainingMemory");
        new PeftTextClassificationOptions { MaxTrainingMemory = 0 }.Validate();
        new PeftTextClassificationOptions { MaxTrainingMemory = 256 * MiB }.Validate();
    }

    private static (TrainingReport Report, Dictionary<string, torch.Tensor> Weights) Fit(List<Example> rows,
        long? budget, long startResident)
    {
        torch.manual_seed(3);
        using var model = DropoutFreeModel();
        var settings = Settings() with { MemoryBudget = budget, StartResidentBytes = startResident };
        var trainer = new PeftTrainer(model, settings, 0, torch.CPU);
        var report = trainer.Train(rows, rows.Take(16).ToList(), null, () => { }, CancellationToken.None);
        var weights = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        return (report, weights);
    }

    private static TrainingSettings Settings() => new()
    {
        BatchSize = 16, Epochs = 2, LearningRate = 5e-3, Seed = 1, Task = PeftTask.Classification,
    };

    private static PeftModel DropoutFreeModel() => PeftModel.Create(
        new BertModel(BertModelTests.Tiny() with { HiddenDropoutProb = 0, AttentionDropoutProb = 0 }),
        new LoraConfig { Rank = 4, TargetModules = [LoraConfig.AllLinear], Dropout = 0 }, 2, Pooling.Cls, 0);

    private static Dictionary<string, torch.Tensor> Gradients(PeftModel model) =>
        model.TrainableParameters().Where(p => p.Parameter.grad is not null)
            .ToDictionary(p => p.Name, p => p.Parameter.grad!.detach().clone());
}
