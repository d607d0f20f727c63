using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Methods.AdaLora;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static Microsoft.ML.Peft.Tests.Methods.ReparamTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Tests.Methods;

[TestClass]
public sealed class AdaLoraTests
{
    [TestMethod]
    public void TrainableCountMatchesFormulaAtInitialRank()
    {
        // r_init · (in + out + 1) per targeted layer: 6 · 2 · 12 · (384 + 384 + 1) = 110,736.
        using var model = PeftModel.Create(Encoder(3, MiniLm()), new AdaLoraConfig(), 2);
        var (trainable, _) = model.CountParameters();
        Assert.AreEqual(6L * 2 * 12 * (384 + 384 + 1) + MiniLmHead, trainable);
        Assert.AreEqual(110_736L + MiniLmHead, trainable);
        var names = model.TrainableParameters().Select(p => p.Name).ToList();
        CollectionAssert.Contains(names, "bert.encoder.layer.0.attention.self.query.lora_E");
    }

    [TestMethod]
    public void BudgetScheduleIsCubicFromInitialToTarget()
    {
        const int total = 100, init = 144, target = 96, tinit = 10, tfinal = 20;
        var budgets = Enumerable.Range(1, total)
            .Select(s => AdaLoraBudget.At(s, total, init, target, tinit, tfinal, 1)).ToList();
        // Warm-up: full budget, no masking.
        Assert.AreEqual((init, false), budgets[0]);
        Assert.AreEqual((init, false), budgets[tinit - 1]);
        // Right after the warm-up the budget has barely moved; at and after total − tfinal it is the target, masked.
        Assert.IsGreaterThanOrEqualTo(init - 3, budgets[tinit].Budget);
        Assert.IsLessThan(init, budgets[tinit + 1].Budget);
        Assert.AreEqual((target, true), budgets[total - tfinal - 1]);
        Assert.AreEqual((target, true), budgets[total - 1]);
        for (int i = 1; i < total; i++) Assert.IsLessThanOrEqualTo(budgets[i - 1].Budget, budgets[i].Budget,
            $"budget rose at step {i + 1}");
        // Cubic: halfway through the falling phase (step 45) (1 − 0.5)³ = 1/8 of the excess remains.
        Assert.AreEqual(target + (init - target) / 8, budgets[44].Budget);
        // deltaT: masking only on multiples.
        Assert.IsFalse(AdaLoraBudget.At(33, total, init, target, tinit, tfinal, 10).Mask);
        Assert.IsTrue(AdaLoraBudget.At(40, total, init, target, tinit, tfinal, 10).Mask);
    }

    [TestMethod]
    public void PhasesKeepAFinalStepAndAFallingPhase()
    {
        Assert.AreEqual((10, 20), AdaLoraBudget.Phases(100, 0.1, 0.2));
        var (tinit, tfinal) = AdaLoraBudget.Phases(3, 0.4, 0.5);
        Assert.IsLessThan(3, tinit + tfinal);
        Assert.IsGreaterThanOrEqualTo(1, 3 - tfinal);
    }

    [TestMethod]
    [DataRow(60)]
    [DataRow(6000)]
    public void TheBudgetScheduleScalesWithTheRealNumberOfSteps(int total)
    {
        // peft's schedule as fractions of the planned steps: 10% at the initial budget, 20% at the target.
        var config = new AdaLoraConfig();
        var (tinit, tfinal) = AdaLoraBudget.Phases(total, config.InitialWarmupFraction, config.FinalFraction);
        Assert.AreEqual(total / 10, tinit);
        Assert.AreEqual(total / 5, tfinal);
        // Half way through the falling phase the cubic leaves (1/2)³ of the excess: 96 + 48 / 8 singular values.
        int middle = tinit + (total - tfinal - tinit) / 2;
        Assert.AreEqual(102, AdaLoraBudget.At(middle, total, 144, 96, tinit, tfinal, 1).Budget);
        Assert.AreEqual((96, true), AdaLoraBudget.At(total - tfinal, total, 144, 96, tinit, tfinal, 1));
        Assert.AreEqual((144, false), AdaLoraBudget.At(tinit, total, 144, 96, tinit, tfinal, 1));
    }

    [TestMethod]
    public void ShortTrainingPrunesToTheTargetBudgetAndKeepsItPruned()
    {
        // Tiny encoder, query and value of 2 layers: 4 × 6 = 24 singular values, target 4 × 2 = 8.
        var config = new AdaLoraConfig { InitialRank = 6, TargetRank = 2, InitialWarmupFraction = 0.1,
            FinalFraction = 0.3, Dropout = 0 };
        torch.manual_seed(11);
        using var model = PeftModel.Create(Encoder(7), config, 2);
        model.train();
        var trainable = model.TrainableParameters().Select(p => p.Parameter).ToList();
        using var optimizer = optim.AdamW(trainable, lr: 1e-2);
        const int total = 30;
        using var ids = randint(1, 50, [8, 6]);
        using var mask = ones(8, 6, dtype: ScalarType.Int64);
        using var labels = randint(0, 2, [8]);
        config.OnTrainingStart(model, null!);
        var counts = new List<long>();
        for (int step = 1; step <= total; step++)
        {
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(ids, mask, null), labels)
                    + config.ExtraLoss(model)!;
                loss.backward();
                optimizer.step();
            }
            config.OnStepEnd(model, step, total);
            counts.Add(NonZeroSingularValues(model));
        }
        Assert.AreEqual(24L, counts[0], "nothing is pruned during the warm-up");
        Assert.IsTrue(counts.Skip(5).Take(10).Any(c => c is < 24 and > 8),
            "the budget falls gradually: " + string.Join(",", counts));
        // From the final allocation on, exactly the target budget stays non-zero, step after step.
        var (_, tfinal) = AdaLoraBudget.Phases(total, config.InitialWarmupFraction, config.FinalFraction);
        foreach (var c in counts.Skip(total - tfinal - 1)) Assert.AreEqual(8L, c, string.Join(",", counts));
        // The orthogonality regulariser is a positive scalar while P and Q are not orthonormal.
        using var reg = config.ExtraLoss(model)!;
        Assert.IsGreaterThan(0f, reg.item<float>());
    }

    private static long NonZeroSingularValues(PeftModel model) =>
        model.named_parameters().Where(p => p.name.EndsWith(".lora_E")).Sum(p =>
            p.parameter.count_nonzero().item<long>());

    [TestMethod]
    public void OrthogonalRegulariserVanishesForOrthonormalFactors()
    {
        var config = new AdaLoraConfig { InitialRank = 4, TargetRank = 2 };
        using var model = PeftModel.Create(Encoder(8), config, 2);
        using (no_grad())
            foreach (var layer in ModuleSurgery.NamedModules(model).Select(m => m.Module).OfType<SvdLinear>())
            {
                using var eye16 = eye(16);
                layer.lora_A.copy_(eye16[..4]);          // Q: orthonormal rows
                layer.lora_B.copy_(eye16[.., ..4]);      // P: orthonormal columns
            }
        using var reg = config.ExtraLoss(model)!;
        Assert.AreEqual(0f, reg.item<float>(), 1e-6f);
        Assert.IsNull(new AdaLoraConfig { OrthRegWeight = 0 }.ExtraLoss(model));
    }

    [TestMethod]
    public void MergeAndUnmergeGiveIdenticalLogits()
    {
        var (ids, mask) = Batch();
        var config = new AdaLoraConfig { InitialRank = 4, TargetRank = 2,
            TargetModules = ["query", "value", "output.dense"] };
        using var model = PeftModel.Create(Encoder(9), config, 3);
        model.eval();
        Perturb(model, "lora_E", 1.0);
        // A pruned entry in every lora_E.
        using (no_grad()) foreach (var (n, p) in model.named_parameters()) if (n.EndsWith(".lora_E")) p[0].zero_();
        using var unmerged = model.forward(ids, mask, null);
        Assert.IsTrue(config.Merge(model));
        using var merged = model.forward(ids, mask, null);
        config.Unmerge(model);
        using var again = model.forward(ids, mask, null);
        Assert.IsLessThan(1e-5f, MaxDiff(merged, unmerged));
        Assert.IsLessThan(1e-5f, MaxDiff(again, unmerged));
        var same = new AdaLoraConfig
        {
            InitialRank = 4, TargetRank = 2, TargetModules = ["query", "value", "output.dense"],
        };
        using var plain = PeftModel.Create(Encoder(9), same, 3);
        plain.eval();
        plain.classifier.weight!.detach().copy_(model.classifier.weight!);
        using var baseline = plain.forward(ids, mask, null);
        Assert.IsGreaterThan(1e-3f, MaxDiff(baseline, unmerged), "the update must matter");
    }

    [TestMethod]
    public void OptionsRoundTripThroughJsonAndValidate()
    {
        var back = (AdaLoraConfig)PeftMethodConfig.FromJson(new AdaLoraConfig { InitialRank = 10, TargetRank = 4,
            DeltaT = 5, FinalFraction = 0.3, Beta1 = 0.8 }.ToJson());
        Assert.AreEqual(10, back.InitialRank);
        Assert.AreEqual(4, back.TargetRank);
        Assert.AreEqual(5, back.DeltaT);
        Assert.AreEqual(0.3, back.FinalFraction);
        Assert.AreEqual(0.8, back.Beta1);
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new AdaLoraConfig {
            TargetRank = 20 }.Validate()).Message, "TargetRank");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new AdaLoraConfig {
            InitialWarmupFraction = 0.6, FinalFraction = 0.5 }.Validate()).Message, "FinalFraction");
    }

    [TestMethod]
    public void SaveAndLoadGiveIdenticalScores()
    {
        var (expected, actual, stage) = RoundTrip(new AdaLoraConfig { InitialRank = 4, TargetRank = 2 });
        CollectionAssert.AreEqual(expected, actual);
        // Tiny base: 2 layers × query, value → target budget 4 × 2 = 8 singular values survive and are saved as
        // such.
        long nonZero = Trained(stage).Where(t => t.Key.EndsWith(".lora_E")).Sum(t =>
            t.Value.count_nonzero().item<long>());
        Assert.AreEqual(8L, nonZero);
    }
}
