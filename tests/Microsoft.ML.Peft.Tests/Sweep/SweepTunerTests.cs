using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Sweep;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>Tuners over search spaces, without training.</summary>
[TestClass]
public sealed class SweepTunerTests
{
    public static IEnumerable<object[]> Tuners() =>
    [
        [PeftTuner.Random(1)], [PeftTuner.Grid()], [PeftTuner.CostFrugal(1)],
    ];

    [TestMethod]
    [DynamicData(nameof(Tuners))]
    public void ProposalsAreValidConfigurationsOfTheDefaultSpace(PeftTuner tuner)
    {
        var space = PeftSearchSpace.CreateDefault();
        tuner.Reset(space);
        var rng = new Random(3);
        for (int i = 0; i < 60; i++)
        {
            var p = tuner.Propose();
            Assert.IsNotNull(p);
            CollectionAssert.Contains(space.Methods.ToList(), p.Method);
            var expected = space.ParametersOf(p.Method);
            CollectionAssert.AreEquivalent(expected.Select(q => q.Name).ToList(), p.Values.Keys.ToList(), p.ToJson());
            foreach (var q in expected)
                Assert.IsTrue(q.Contains(p.Values[q.Name]), $"{q.Name}={p.Values[q.Name]} in {p.ToJson()}");
            var options = new PeftTextClassificationOptions();
            p.ApplyTo(options);
            options.Validate();
            Assert.AreEqual(p.Method, options.Method!.MethodName);
            var back = TrialParameters.FromJson(p.ToJson());
            Assert.AreEqual(p.ToJson(), back.ToJson());
            tuner.Report(p, rng.NextDouble(), TimeSpan.FromSeconds(rng.NextDouble()));
        }
    }

    [TestMethod]
    public void ConditionalParametersLandOnTheMethodConfig()
    {
        var p = new TrialParameters("lora", new Dictionary<string, object>
        {
            ["Rank"] = 16, ["Alpha"] = 32.0, ["TargetModules"] = "query,key,value", ["LearningRate"] = 1e-3,
            ["Epochs"] = 2,
        });
        var options = new PeftTextClassificationOptions();
        p.ApplyTo(options);
        var lora = (Microsoft.ML.Peft.Methods.Lora.LoraConfig)options.Method!;
        Assert.AreEqual(16, lora.Rank);
        Assert.AreEqual(32.0, lora.Alpha);
        CollectionAssert.AreEqual(new[] { "query", "key", "value" }, lora.TargetModules);
        Assert.AreEqual(1e-3, options.LearningRate);
        Assert.AreEqual(2, options.Epochs);
        Assert.ThrowsExactly<ArgumentException>(() => new PeftSearchSpace()
            .AddMethod("lora", new ChoiceParameter("NoSuchOption", 1)));
        Assert.ThrowsExactly<ArgumentException>(() => new PeftSearchSpace().AddMethod("no-such-method"));
    }

    [TestMethod]
    public void TheDefaultSpaceIsWhatTheOptionsClassesDeclare()
    {
        var space = PeftSearchSpace.CreateDefault();
        // Read the attributes directly and compare them with the parameters the space built from them.
        var rankAttribute = typeof(Microsoft.ML.Peft.Methods.Lora.LowRankConfigBase).GetProperty("Rank")!
            .GetCustomAttributes(typeof(Microsoft.ML.SearchSpace.ChoiceAttribute), false)
            .Cast<Microsoft.ML.SearchSpace.ChoiceAttribute>().Single();
        var rank = (ChoiceParameter)space.MethodParameters("lora").Single(p => p.Name == "Rank");
        CollectionAssert.AreEqual(rankAttribute.Candidates, rank.Values.ToArray());
        Assert.AreEqual(rankAttribute.DefaultValue, rank.Default);
        // DoRA inherits LoRA's declared ranges from their shared options base.
        CollectionAssert.AreEqual(space.MethodParameters("lora").Select(p => p.Name).ToList(),
            space.MethodParameters("dora").Select(p => p.Name).ToList());

        var lrAttribute = typeof(PeftTextOptions).GetProperty("LearningRate")!
            .GetCustomAttributes(typeof(Microsoft.ML.SearchSpace.RangeAttribute), false)
            .Cast<Microsoft.ML.SearchSpace.RangeAttribute>().Single();
        var lr = (RangeParameter)space.Shared.Single(p => p.Name == "LearningRate");
        Assert.AreEqual(Convert.ToDouble(lrAttribute.Min), lr.Min);
        Assert.AreEqual(Convert.ToDouble(lrAttribute.Max), lr.Max);
        Assert.AreEqual(lrAttribute.LogBase, lr.LogScale);
        Assert.AreEqual(Convert.ToDouble(lrAttribute.Init), (double)lr.Default);
        var epochs = (RangeParameter)space.Shared.Single(p => p.Name == "Epochs");
        Assert.IsTrue(epochs.IsInteger, "an int range gives integer values");
        Assert.IsInstanceOfType<int>(epochs.Default);

        // A method without declared ranges is searched at its defaults; users narrow the declared space in code.
        Assert.IsEmpty(space.MethodParameters("ia3"));
        var narrowed = PeftSearchSpace.CreateDefault().AddMethod("lora", new ChoiceParameter("Rank", 8))
            .RemoveMethod("prefix");
        Assert.AreEqual(1, narrowed.MethodParameters("lora").Count);
        CollectionAssert.DoesNotContain(narrowed.Methods.ToList(), "prefix");
        Assert.ThrowsExactly<ArgumentException>(() => new PeftSearchSpace()
            .AddMethodWithDeclaredRanges("no-such-method"));
    }

    [TestMethod]
    public void GridCoversTheCartesianProductOnce()
    {
        var space = new PeftSearchSpace()
            .SetShared(new RangeParameter("Epochs", 1, 3, isInteger: true, gridPoints: 3))
            .AddMethod("lora", new ChoiceParameter("Rank", 4, 8), new ChoiceParameter("Alpha", 8.0, 16.0))
            .AddMethod("bitfit");
        var tuner = PeftTuner.Grid();
        tuner.Reset(space);
        var seen = new List<string>();
        while (tuner.Propose() is { } p) seen.Add(p.ToJson());
        Assert.AreEqual(3 * 2 * 2 + 3, seen.Count);
        Assert.AreEqual(seen.Count, seen.Distinct().Count());
        foreach (int e in new[] { 1, 2, 3 })
        {
            CollectionAssert.Contains(seen,
                new TrialParameters("bitfit", new Dictionary<string, object> { ["Epochs"] = e }).ToJson());
            foreach (int r in new[] { 4, 8 })
                foreach (double a in new[] { 8.0, 16.0 })
                    CollectionAssert.Contains(seen, new TrialParameters("lora",
                        new Dictionary<string, object> { ["Epochs"] = e, ["Rank"] = r, ["Alpha"] = a }).ToJson());
        }
    }

    [TestMethod]
    public void RangeGridAndLogScale()
    {
        var lr = new RangeParameter("LearningRate", 1e-4, 1e-2, logScale: true, gridPoints: 3);
        var grid = lr.GridValues().Cast<double>().ToArray();
        Assert.AreEqual(3, grid.Length);
        Assert.AreEqual(1e-4, grid[0], 1e-12);
        Assert.AreEqual(1e-3, grid[1], 1e-12);
        Assert.AreEqual(1e-2, grid[2], 1e-12);
        Assert.AreEqual(1e-3, (double)lr.Default, 1e-12);
    }

    [TestMethod]
    public void TunersAreDeterministicGivenTheSeed()
    {
        foreach (var make in new Func<PeftTuner>[] { () => PeftTuner.Random(7), () => PeftTuner.CostFrugal(7) })
        {
            static List<string> Run(PeftTuner t)
            {
                t.Reset(PeftSearchSpace.CreateDefault());
                var list = new List<string>();
                for (int i = 0; i < 25; i++)
                {
                    var p = t.Propose()!;
                    list.Add(p.ToJson());
                    t.Report(p, Objective(p), TimeSpan.FromSeconds(1));
                }
                return list;
            }
            var tuner = make();
            CollectionAssert.AreEqual(Run(tuner), Run(make()));
            CollectionAssert.AreEqual(Run(make()), Run(tuner)); // Reset forgets everything
        }
    }

    /// <summary>A synthetic loss with its minimum 0 at LoRA, rank 16, learning rate 3e-4, 5 epochs.</summary>
    internal static double Objective(TrialParameters p)
    {
        double lr = Convert.ToDouble(p.Values["LearningRate"]);
        double loss = Math.Pow(Math.Log10(lr) - Math.Log10(3e-4), 2) + 0.1 * (5 - Convert.ToDouble(p.Values["Epochs"]));
        loss += p.Method == "lora" ? (Convert.ToInt32(p.Values["Rank"]) == 16 ? 0 : 0.5) : 1.0;
        return loss;
    }

    [TestMethod]
    public async Task CostFrugalStartsAtTheDefaultsAndImprovesOnThem()
    {
        var space = PeftSearchSpace.CreateDefault();
        var ml = new MLContext(1);
        var result = await ml.Peft().CreateSweep()
            .SetSearchSpace(space).SetMetric(PeftMetric.LogLoss).SetTuner(PeftTuner.CostFrugal(1)).SetMaxTrials(60)
            .SetTrialEvaluation((p, _) => new TrialOutcome(Objective(p)))
            .RunAsync();
        var start = result.Trials[0];
        Assert.AreEqual("lora", start.Parameters.Method);
        Assert.AreEqual(8, start.Parameters.Values["Rank"]);
        Assert.AreEqual(1, start.Parameters.Values["Epochs"]);
        Assert.AreEqual(2e-3, (double)start.Parameters.Values["LearningRate"], 1e-12);
        Assert.IsTrue(result.BestTrial.Metric < 0.5 * start.Metric,
            $"start {start.Metric}, best {result.BestTrial.Metric}");
        Assert.IsTrue(result.BestTrial.Metric < 0.3, $"best {result.BestTrial.Metric}: {result.BestTrial.Parameters}");

        // Random search with the same budget for comparison is usually worse; only log it.
        var random = await ml.Peft().CreateSweep().SetSearchSpace(space).SetMetric(PeftMetric.LogLoss)
            .SetTuner(PeftTuner.Random(1)).SetMaxTrials(60)
            .SetTrialEvaluation((p, _) => new TrialOutcome(Objective(p))).RunAsync();
        Console.WriteLine($"CFO best {result.BestTrial.Metric:F4}, random best {random.BestTrial.Metric:F4}");
    }
}
