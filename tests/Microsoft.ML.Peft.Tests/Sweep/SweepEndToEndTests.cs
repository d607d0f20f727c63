using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Sweep;
using Microsoft.ML.Peft.Testing;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.Stages;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>Two real trials on the tiny ONNX base; the best model round-trips through save and load.</summary>
[TestClass]
public sealed class SweepEndToEndTests
{
    /// <summary>The tiny ONNX base written into <paramref name="temp"/>, and small negation training and validation
    /// sets.</summary>
    internal static (MLContext Ml, IDataView Train, IDataView Validation, BaseModel Base) Setup(
        EmbeddedOnnx.TempFolder temp)
    {
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        return (ml, StageTestData.Load(ml, StageTestData.Negation(48, 1)),
            StageTestData.Load(ml, StageTestData.Negation(24, 2)),
                BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")));
    }

    /// <summary>Training rows 90% positive, validation rows 70% positive: on the tiny base a stage learns about the
    /// prior only.</summary>
    private static (IDataView Train, IDataView Validation) PriorOnly(MLContext ml)
    {
        IDataView Rows(int positives, int negatives, int seed)
        {
            var all = StageTestData.Negation(8 * (positives + negatives), seed);
            return StageTestData.Load(ml, all.Where(r => r.Label == "positive").Take(positives)
                .Concat(all.Where(r => r.Label == "negative").Take(negatives)).OrderBy(r => r.Text));
        }
        return (Rows(58, 6, 1), Rows(28, 12, 2));
    }

    /// <summary>Untrained (learning rate 1e-6) and trained (5e-2) LoRA stages of rank 4 and 8.</summary>
    private static PeftSearchSpace PriorSpace() => new PeftSearchSpace()
        .SetShared(new ChoiceParameter("LearningRate", 1e-6, 5e-2))
        .SetShared(new ChoiceParameter("Epochs", 10))
        .SetShared(new ChoiceParameter("BatchSize", 16))
        .SetShared(new ChoiceParameter("MaxSequenceLength", 16))
        .AddMethod("lora", new ChoiceParameter("Rank", 4, 8));

    /// <summary>One epoch of LoRA at a small length and batch; learning rate and rank vary.</summary>
    private static PeftSearchSpace SmallSpace() => new PeftSearchSpace()
        .SetShared(new RangeParameter("LearningRate", 5e-3, 2e-2, logScale: true))
        .SetShared(new ChoiceParameter("Epochs", 1))
        .SetShared(new ChoiceParameter("BatchSize", 16))
        .SetShared(new ChoiceParameter("MaxSequenceLength", 16))
        .AddMethod("lora", new ChoiceParameter("Rank", 4, 8));

    [TestMethod]
    public async Task TwoRealTrialsAndTheBestModelRoundTrips()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, train, validation, baseModel) = Setup(temp);
        var space = SmallSpace().AddMethod("bitfit");
        PeftSweep NewSweep() => ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.MacroAccuracy)
            .SetSearchSpace(space).SetTuner(PeftTuner.Random(1)).SetMaxTrials(2).SetTrainingTimeInSeconds(120)
            .SetBaseModel(baseModel)
            .SetCheckpointFolder(Path.Combine(temp.Path, "sweep"));
        var result = await NewSweep().RunAsync();

        Assert.AreEqual(2, result.Trials.Count);
        Assert.IsTrue(result.Trials.All(t => t.Status == TrialStatus.Succeeded),
            string.Join("; ", result.Trials.Select(t => t.Error)));
        Assert.IsTrue(result.Trials.All(t => t.TrainableParameters > 0));
        Assert.IsNotNull(result.BestModel);
        Assert.IsTrue(File.Exists(Path.Combine(temp.Path, "sweep", "best-model.zip")));

        string zip = Path.Combine(temp.Path, "best.zip");
        ml.Model.Save(result.BestModel, train.Schema, zip);
        var expected = RowFormatter.Format(result.BestModel.Transform(validation), ["Score"]);
        var loaded = new MLContext(2).Model.Load(zip, out _);
        CollectionAssert.AreEqual(expected, RowFormatter.Format(loaded.Transform(validation), ["Score"]));

        // Resuming from the checkpoint trains nothing and returns the same best model (loaded from best-model.zip).
        int started = 0;
        var resumed = await NewSweep().SetMonitor(e => { if (e.Kind == SweepEventKind.TrialStarted) started++; })
            .RunAsync();
        Assert.AreEqual(0, started);
        Assert.IsTrue(resumed.Trials.All(t => t.FromCheckpoint));
        Assert.AreEqual(result.BestTrial.Parameters.ToJson(), resumed.BestTrial.Parameters.ToJson());
        CollectionAssert.AreEqual(expected, RowFormatter.Format(resumed.BestModel!.Transform(validation), ["Score"]));
    }

    [TestMethod]
    public async Task SuccessiveHalvingWithRealTrainingPrunesOrFinishesEveryTrial()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        var ml = new MLContext(1);
        // Regression on 0/1 targets: RMSE after each epoch is continuous, so the rung comparison rarely ties.
        static IEnumerable<ScoreRow> AsScores(IEnumerable<TextRow> rows) =>
            rows.Select(r => new ScoreRow { Label = r.Label == "positive" ? 1 : 0, Text = r.Text ?? "" });
        var train = ml.Data.LoadFromEnumerable(AsScores(StageTestData.Negation(32, 1)));
        var validation = ml.Data.LoadFromEnumerable(AsScores(StageTestData.Negation(16, 2)));
        var space = new PeftSearchSpace()
            .SetShared(new ChoiceParameter("LearningRate", 1e-2, 1e-6))
            .SetShared(new ChoiceParameter("Epochs", 2))
            .SetShared(new ChoiceParameter("BatchSize", 16))
            .SetShared(new ChoiceParameter("MaxSequenceLength", 16))
            .AddMethod("lora");
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Rmse)
            .SetSearchSpace(space).SetTuner(PeftTuner.Grid()).SetMaxTrials(3).SetEarlyStopping(reductionFactor: 2)
            .SetBaseModel(BaseModel.FromOnnx(onnx, vocab, cacheDirectory: Path.Combine(temp.Path, "cache")))
            .RunAsync();
        Console.WriteLine(string.Join("\n", result.Trials.Select(t => $"{t.Status} {t.Metric} {t.Error}")));
        Assert.AreEqual(2, result.Trials.Count); // the grid has two points
        foreach (var t in result.Trials)
            Assert.IsTrue(t.Status == TrialStatus.Succeeded
                || (t.Status == TrialStatus.Pruned && t.Error!.Contains("successive halving")),
                $"{t.Status}: {t.Error}");
        Assert.IsNotNull(result.BestModel);
    }

    [TestMethod]
    public async Task RefitRetrainsTheBestConfigurationWithinTheReservedTime()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, train, validation, baseModel) = Setup(temp);
        var space = SmallSpace();
        const double budget = 16, share = 0.25;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Accuracy)
            .SetSearchSpace(space).SetTuner(PeftTuner.Random(1)).SetMaxTrials(2).SetTrainingTimeInSeconds(budget)
            .SetRefit(share)
            .SetBaseModel(baseModel)
            .RunAsync();
        double elapsed = clock.Elapsed.TotalSeconds;

        Assert.AreEqual(3, result.Trials.Count);
        var refit = result.Trials[^1];
        Assert.IsTrue(refit.Refit);
        Assert.IsTrue(result.Trials.Take(2).All(t => !t.Refit));
        Assert.AreEqual(TrialStatus.Succeeded, refit.Status, refit.Error);
        var bestSearched = result.Trials.Take(2).Where(t => t.Status == TrialStatus.Succeeded)
            .OrderByDescending(t => t.Metric).ThenBy(t => t.ValidationLoss).ThenBy(t => t.Duration).First();
        Assert.AreEqual(bestSearched.Parameters.ToJson(), refit.Parameters.ToJson(),
            "the refit retrains the best searched configuration");
        // The refit ran (several epochs) for about its share of the budget, and the whole sweep kept to the budget.
        Assert.IsGreaterThan(share * budget * 0.5, refit.Duration.TotalSeconds);
        Assert.IsLessThan(budget * 1.1 + 5, elapsed, "budget plus the time to build the base model");
        // The best is the refit exactly when it scored better than the best searched trial, or as well with a lower
        // log-loss.
        bool refitWins = refit.Metric > bestSearched.Metric
            || (refit.Metric == bestSearched.Metric && refit.ValidationLoss <= bestSearched.ValidationLoss);
        Assert.AreEqual(refitWins, result.BestTrial.Refit);
        Assert.AreEqual(Math.Max(refit.Metric, bestSearched.Metric), result.BestTrial.Metric);
        Assert.IsNotNull(result.BestModel);
        Assert.AreEqual(24,
            Microsoft.ML.Data.ColumnCursorExtensions.GetColumn<float[]>(result.BestModel.Transform(validation), "Score")
            .Count());

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().CreateSweep().SetRefit(1.0));
        await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            ml.Peft().CreateSweep().SetDataset(train, validation).SetMaxTrials(1).SetRefit().RunAsync());
    }

    [TestMethod]
    public async Task RefitOfSeveralConfigurationsRetrainsTheBestDistinctOnesInEqualShares()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, train, validation, baseModel) = Setup(temp);
        const double budget = 24, share = 0.5;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Accuracy)
            .SetSearchSpace(SmallSpace()).SetTuner(PeftTuner.Random(1)).SetMaxTrials(3).SetTrainingTimeInSeconds(budget)
            .SetRefit(share, configurations: 2)
            .SetBaseModel(baseModel)
            .RunAsync();
        double elapsed = clock.Elapsed.TotalSeconds;

        Assert.AreEqual(5, result.Trials.Count);
        var searched = result.Trials.Take(3).ToList();
        var refits = result.Trials.Skip(3).ToList();
        Assert.IsTrue(searched.All(t => !t.Refit) && refits.All(t => t.Refit));
        Assert.IsTrue(refits.All(t => t.Status == TrialStatus.Succeeded),
            string.Join("; ", refits.Select(t => t.Error)));
        // The two best searched configurations, best first, each retrained once (the random points are all distinct).
        var ranked = searched.Where(t => t.Status == TrialStatus.Succeeded).OrderByDescending(t => t.Metric)
            .ThenBy(t => t.ValidationLoss).ThenBy(t => t.Duration).ToList();
        Assert.AreEqual(3, searched.Select(t => t.Parameters.ToJson()).Distinct().Count());
        CollectionAssert.AreEqual(ranked.Take(2).Select(t => t.Parameters.ToJson()).ToList(),
            refits.Select(t => t.Parameters.ToJson()).ToList());
        // The search ended after three short trials, so the reserve (half the budget) began then and was split in two.
        foreach (var refit in refits)
        {
            Assert.IsGreaterThan(share * budget / 2 * 0.5, refit.Duration.TotalSeconds,
                "each refit trains for about half the reserve");
            Assert.IsLessThan(share * budget / 2 * 1.3 + 2, refit.Duration.TotalSeconds, "and not much more");
        }
        Assert.IsLessThan(budget * 1.1 + 5, elapsed, "budget plus the time to build the base model");
        var bestSoFar = result.Trials.Where(t => t.Status == TrialStatus.Succeeded).OrderByDescending(t => t.Metric)
            .ThenBy(t => t.ValidationLoss).First();
        Assert.AreEqual(bestSoFar.Metric, result.BestTrial.Metric);

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().CreateSweep()
            .SetRefit(0.5, configurations: 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().CreateSweep()
            .SetRefit(0.5, configurations: 17));
    }

    /// <summary>A sweep of two trials (<see cref="PriorSpace"/> trained at learning rate 5e-2 only) on the prior-only
    /// data.</summary>
    private static PeftSweep PriorSweep(MLContext ml, IDataView train, IDataView validation, BaseModel baseModel) =>
        ml.Peft().CreateSweep()
        .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.LogLoss)
        .SetSearchSpace(PriorSpace().SetShared(new ChoiceParameter("LearningRate", 5e-2)))
        .SetTuner(PeftTuner.Grid()).SetMaxTrials(2).SetTrainingTimeInSeconds(30)
        .SetBaseModel(baseModel);

    /// <summary>Mean probability of the most likely class: on the tiny base, the positive-class prior a stage
    /// learned.</summary>
    private static double LearnedPrior(ITransformer model, IDataView data) => model.Transform(data)
        .GetColumn<float[]>("Score").Average(s => (double)s.Max());

    [TestMethod]
    public async Task ARefitOnAllDataLearnsFromTheValidationRows()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, _, _, baseModel) = Setup(temp);
        // On the tiny base a stage learns the class prior of what it trains on (see PriorOnly): 58 of 64 training rows
        // are positive (0.906), 86 of 104 training and validation rows (0.827).
        var (train, validation) = PriorOnly(ml);
        var result = await PriorSweep(ml, train, validation, baseModel).SetRefit(0.5, onAllData: true).RunAsync();

        Assert.AreEqual(3, result.Trials.Count,
            string.Join("; ", result.Trials.Select(t => $"{t.Id} {t.Status} {t.Error}")));
        Assert.IsTrue(result.Trials.Take(2).All(t => !t.Refit && !t.TrainedOnValidation));
        var refit = result.Trials[2];
        Assert.IsTrue(refit.Refit && refit.TrainedOnValidation && refit.Status == TrialStatus.Succeeded, refit.Error);
        // The refit is the best model whatever the trials scored, and it learned the prior of all the rows, not that of
        // the training rows.
        Assert.AreEqual(2, result.BestTrial.Id);
        double prior = LearnedPrior(result.BestModel!, validation);
        Assert.IsLessThan(Math.Abs(prior - 58.0 / 64), Math.Abs(prior - 86.0 / 104), $"learned prior {prior:F3}");
        string csv = Path.Combine(temp.Path, "leaderboard.csv");
        result.WriteCsv(csv);
        Assert.AreEqual(1, File.ReadLines(csv).Skip(1).Count(l => l.EndsWith(",true", StringComparison.Ordinal)),
            "one row trained on the validation rows");

        await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => PriorSweep(ml, train, validation, baseModel)
            .SetRefit(0.5, onAllData: true).SetEnsemble(3).RunAsync());
    }

    [TestMethod]
    public async Task SeveralRefitsOnAllDataAreCrossFittedOnFoldsOfTheValidationRowsAndAveraged()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, _, _, baseModel) = Setup(temp);
        var (train, validation) = PriorOnly(ml);
        var result = await PriorSweep(ml, train, validation, baseModel)
            .SetRefit(0.5, configurations: 2, onAllData: true).RunAsync();

        Assert.AreEqual(5, result.Trials.Count,
            string.Join("; ", result.Trials.Select(t => $"{t.Id} {t.Status} {t.Error}")));
        var refits = result.Trials.Skip(2).Take(2).ToList();
        Assert.IsTrue(refits.All(t => t.Refit && !t.TrainedOnValidation && t.Status == TrialStatus.Succeeded),
            string.Join("; ", refits.Select(t => t.Error)));
        // The best model is the equal-weight ensemble of both refits.
        var ensemble = result.BestTrial;
        Assert.AreEqual(4, ensemble.Id);
        Assert.IsFalse(ensemble.TrainedOnValidation);
        CollectionAssert.AreEqual(refits.Select(t => t.Id).ToList(), ensemble.Ensemble.Select(m => m.TrialId).ToList());
        Assert.IsTrue(ensemble.Ensemble.All(m => m.Weight == 0.5));
        var chain = (TransformerChain<ITransformer>)result.BestModel!;
        var members = ((PeftEnsembleTransformer)chain.Last()).Members;
        var keys = chain.First();

        // Refit k held out fold k of the validation rows and trained on the rest of them with the training rows.
        var rows = ml.Data.CreateEnumerable<TextRow>(validation, reuseRowObject: false).ToList();
        var folds = PeftSweep.CrossFitFolds(rows.Count, 2)!;
        double outOfFoldLoss = 0;
        for (int k = 0; k < 2; k++)
        {
            var heldOut = rows.Where((_, i) => folds[i] == k).ToList();
            var trainedOn = rows.Where((_, i) => folds[i] != k).ToList();
            var member = new TransformerChain<ITransformer>(keys, members[k]);
            // Its metric is ML.NET's log-loss of it on the fold it held out.
            var metrics = ml.MulticlassClassification.Evaluate(member.Transform(StageTestData.Load(ml, heldOut)));
            Assert.AreEqual(metrics.LogLoss, refits[k].Metric, 1e-4, $"refit {k} on its held-out fold");
            outOfFoldLoss += metrics.LogLoss * heldOut.Count / rows.Count;
            // It learned the prior of the training rows and the validation rows it trained on, not that of the training
            // rows alone.
            double trainedPrior = (58.0 + trainedOn.Count(r => r.Label == "positive")) / (64 + trainedOn.Count);
            double prior = LearnedPrior(member, validation);
            Assert.IsLessThan(Math.Abs(prior - 58.0 / 64), Math.Abs(prior - trainedPrior),
                $"refit {k}: learned prior {prior:F3}, trained on a prior of {trainedPrior:F3}");
        }
        // The ensemble's metric is that of the out-of-fold scores, each row scored by the refit that held it out.
        Assert.AreEqual(outOfFoldLoss, ensemble.Metric, 1e-4);
        string csv = Path.Combine(temp.Path, "leaderboard.csv");
        result.WriteCsv(csv);
        Assert.AreEqual(0, File.ReadLines(csv).Skip(1).Count(l => l.EndsWith(",true", StringComparison.Ordinal)),
            "no in-sample metrics");
    }

    [TestMethod]
    public async Task EnsembleOfTheBestTrialsIsTheBestModelWhenItValidatesBetter()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, _, _, baseModel) = Setup(temp);
        // The tiny test base gives nearly the same features for every text, so a stage learns little more than the
        // class prior: with 90% positive training rows a well-trained stage says ~0.9 everywhere, an untrained one
        // ~0.5. On validation rows that are 70% positive, a mix of the two has a lower log-loss than either (0.61
        // against 0.69 and 0.76 for the exact priors), a margin training noise does not close.
        var (train, validation) = PriorOnly(ml);
        var space = PriorSpace();
        var events = new List<SweepEvent>();
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.LogLoss)
            .SetSearchSpace(space).SetTuner(PeftTuner.Grid()).SetMaxTrials(4).SetEnsemble(3)
            .SetBaseModel(baseModel).SetCheckpointFolder(Path.Combine(temp.Path, "sweep")).SetMonitor(events.Add)
            .RunAsync();

        var trials = result.Trials.Where(t => t.Ensemble.Count == 0).ToList();
        Console.WriteLine(string.Join("\n", result.Trials.Select(t => $"{t.Id} {t.Status} {t.Metric} " +
            $"{t.Parameters.ToJson()} {string.Join(",", t.Ensemble)}")));
        Assert.AreEqual(4, trials.Count);
        Assert.IsTrue(trials.All(t => t.Status == TrialStatus.Succeeded),
            string.Join("; ", trials.Select(t => t.Error)));
        var ensembleRow = result.Trials.Single(t => t.Ensemble.Count > 0);
        Assert.AreSame(ensembleRow, result.BestTrial);
        Assert.AreSame(ensembleRow, result.Leaderboard().First());
        Assert.IsLessThan(trials.Min(t => t.Metric), ensembleRow.Metric);
        Assert.IsGreaterThanOrEqualTo(2, ensembleRow.Ensemble.Count);
        Assert.AreEqual(1.0, ensembleRow.Ensemble.Sum(m => m.Weight), 1e-9);
        // Members are among the three best trials, heaviest first.
        var best3 = trials.OrderBy(t => t.Metric).Take(3).Select(t => t.Id).ToList();
        Assert.IsTrue(ensembleRow.Ensemble.All(m => best3.Contains(m.TrialId)),
            string.Join(", ", ensembleRow.Ensemble));
        CollectionAssert.AreEqual(ensembleRow.Ensemble.OrderByDescending(m => m.Weight).ToList(),
            ensembleRow.Ensemble.ToList());
        Assert.AreEqual(ensembleRow.Id, events.Last().TrialId);

        // The reported metric is what ML.NET's evaluator says of the returned model on the validation set.
        var model = result.BestModel!;
        var ensemble = ((IEnumerable<ITransformer>)model).OfType<PeftEnsembleTransformer>().Single();
        CollectionAssert.AreEqual(ensembleRow.Ensemble.Select(m => m.Weight).ToList(), ensemble.Weights.ToList());
        Assert.AreEqual(ml.MulticlassClassification.Evaluate(model.Transform(validation), "Label").LogLoss,
            ensembleRow.Metric, 1e-6);

        // The ensemble is the checkpoint's best model and round-trips; the leaderboard names its members.
        var expected = RowFormatter.Format(model.Transform(validation), ["Score"]);
        var saved = new MLContext(2).Model.Load(Path.Combine(temp.Path, "sweep", "best-model.zip"), out _);
        CollectionAssert.AreEqual(expected, RowFormatter.Format(saved.Transform(validation), ["Score"]));
        string csv = Path.Combine(temp.Path, "leaderboard.csv");
        result.WriteCsv(csv);
        var first = File.ReadLines(csv).Skip(1).First();
        StringAssert.StartsWith(first, $"{ensembleRow.Id},\"ensemble\"");
        StringAssert.Contains(first, string.Join(';', ensembleRow.Ensemble.Select(m => $"{m.TrialId}:")).Split(';')[0]);

        await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            ml.Peft().CreateSweep().SetTrialEvaluation((_, _) => new TrialOutcome(1)).SetMaxTrials(1).SetEnsemble()
                .RunAsync());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().CreateSweep().SetEnsemble(1));
    }
    [TestMethod]
    public async Task EqualAccuraciesAreRankedByValidationLogLoss()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, _, _, baseModel) = Setup(temp);
        // Every stage answers 'positive' for every row, so every trial's accuracy is 0.7; their log-losses differ.
        var (train, validation) = PriorOnly(ml);
        var result = await ml.Peft().CreateSweep()
            .SetDataset(train, validation).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Accuracy)
            .SetSearchSpace(PriorSpace()).SetTuner(PeftTuner.Grid()).SetMaxTrials(4)
            .SetBaseModel(baseModel)
            .RunAsync();

        Assert.AreEqual(4, result.Trials.Count);
        Assert.IsTrue(result.Trials.All(t => t.Metric == 0.7), string.Join(", ", result.Trials.Select(t => t.Metric)));
        Assert.IsTrue(result.Trials.Select(t => t.ValidationLoss).Distinct().Count() > 1);
        Assert.AreEqual(result.Trials.Min(t => t.ValidationLoss), result.BestTrial.ValidationLoss);
        Assert.AreSame(result.BestTrial, result.Leaderboard().First());
        Assert.AreEqual(ml.MulticlassClassification.Evaluate(result.BestModel!.Transform(validation)).LogLoss,
            result.BestTrial.ValidationLoss, 1e-6);
    }

    [TestMethod]
    public async Task CrossValidationTrainsAStagePerFoldAndScoresOutOfFold()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        var (ml, data, validation, baseModel) = Setup(temp);
        var result = await ml.Peft().CreateSweep()
            .SetDataset(data, folds: 3).SetLabel("Label").SetText("Text").SetMetric(PeftMetric.Accuracy)
            .SetSearchSpace(SmallSpace()).SetTuner(PeftTuner.Random(1)).SetMaxTrials(2)
            .SetBaseModel(baseModel)
            .RunAsync();

        Assert.AreEqual(2, result.Trials.Count);
        Assert.IsTrue(result.Trials.All(t => t.Status == TrialStatus.Succeeded),
            string.Join("; ", result.Trials.Select(t => t.Error)));
        var model = (TransformerChain<ITransformer>)result.BestModel!;
        var bag = model.OfType<PeftEnsembleTransformer>().Single();
        Assert.AreEqual(3, bag.Members.Count);
        CollectionAssert.AreEqual(new[] { 1.0 / 3, 1.0 / 3, 1.0 / 3 }, bag.Weights.ToArray());
        Assert.AreEqual(bag.TrainableParameterCount, result.BestTrial.TrainableParameters);

        // The metric is the accuracy of each fold's stage on the rows it did not train on, over all rows.
        var keys = model.First();
        var folds = ml.Data.CrossValidationSplit(data, 3, seed: 0);
        int right = 0, rows = 0;
        for (int f = 0; f < 3; f++)
        {
            var scored = bag.Members[f].Transform(keys.Transform(folds[f].TestSet));
            var labels = scored.GetColumn<uint>("Label").ToArray();
            right += labels.Zip(scored.GetColumn<uint>("PredictedLabel"), (y, p) => y == p ? 1 : 0).Sum();
            rows += labels.Length;
        }
        Assert.AreEqual(48, rows, "every row is scored once, by the stage that did not see it");
        Assert.AreEqual((double)right / rows, result.BestTrial.Metric, 1e-12);

        // The bagged model scores new rows and round-trips.
        string zip = Path.Combine(temp.Path, "cv.zip");
        ml.Model.Save(model, data.Schema, zip);
        CollectionAssert.AreEqual(RowFormatter.Format(model.Transform(validation), ["Score"]),
                                  RowFormatter.Format(new MLContext(2).Model.Load(zip, out _).Transform(validation),
                                      ["Score"]));

        await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            ml.Peft().CreateSweep().SetDataset(data, folds: 3).SetLabel("Label").SetText("Text")
                .SetTrainingTimeInSeconds(10).SetRefit().RunAsync());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Peft().CreateSweep().SetDataset(data, folds: 1));
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Peft().CreateSweep()
            .SetDataset(data, 3, "Group")).Message, "'Group'");
    }
}

public sealed class ScoreRow
{
    public float Label { get; set; }
    public string Text { get; set; } = "";
}
