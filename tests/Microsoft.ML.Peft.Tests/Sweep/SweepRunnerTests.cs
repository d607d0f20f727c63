using Microsoft.ML.Data;
using System.Diagnostics;
using Microsoft.ML.Peft.Sweep;
using Microsoft.ML.Peft.Tests.BaseModels;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>The sweep runner with synthetic trials (no training): budget, cancellation, failures, checkpoints,
/// leaderboard.</summary>
[TestClass]
public sealed class SweepRunnerTests
{
    private static PeftSearchSpace SmallSpace() => new PeftSearchSpace()
        .SetShared(new RangeParameter("LearningRate", 1e-4, 1e-2, defaultValue: 2e-3, logScale: true))
        .SetShared(new RangeParameter("Epochs", 1, 5, defaultValue: 1, isInteger: true))
        .AddMethod("lora", new ChoiceParameter("Rank", 4, 8, 16).WithDefault(8))
        .AddMethod("ia3");

    private static PeftSweep Sweep(Func<TrialParameters, CancellationToken, TrialOutcome> evaluate,
        PeftTuner? tuner = null) =>
        new MLContext(1).Peft().CreateSweep().SetSearchSpace(SmallSpace()).SetMetric(PeftMetric.Accuracy)
            .SetTuner(tuner ?? PeftTuner.Random(1)).SetTrialEvaluation(evaluate);

    private static TrialOutcome Sleep(TrialParameters p, CancellationToken ct, int ms)
    {
        Task.Delay(ms, ct).GetAwaiter().GetResult();
        return new TrialOutcome(1 - SweepTunerTests.Objective(p) / 10);
    }

    [TestMethod]
    public async Task TimeBudgetIsRespectedAndTheRunningTrialIsCancelled()
    {
        // Four quick trials, then one that would run for 10 s: whatever the machine's load, the budget ends during
        // the fifth and must cancel it (equal 350 ms trials left it to chance whether one was still running at 2 s).
        int started = 0;
        var clock = Stopwatch.StartNew();
        var result = await Sweep((p, ct) => Sleep(p, ct, Interlocked.Increment(ref started) <= 4 ? 100 : 10_000))
            .SetTrainingTimeInSeconds(2).RunAsync();
        clock.Stop();
        Assert.IsTrue(clock.Elapsed.TotalSeconds < 3, $"took {clock.Elapsed.TotalSeconds:F2} s");
        Assert.IsTrue(result.Trials.Count(t => t.Status == TrialStatus.Succeeded) >= 4);
        Assert.AreEqual(TrialStatus.Cancelled, result.Trials[^1].Status);
        Assert.AreEqual(TrialStatus.Succeeded, result.BestTrial.Status);
    }

    [TestMethod]
    public async Task LongTrialIsCancelledAtTheBudget()
    {
        int calls = 0;
        var clock = Stopwatch.StartNew();
        var result =
            await Sweep((p, ct) => Interlocked.Increment(ref calls) == 1 ? Sleep(p, ct, 100) : Sleep(p, ct, 30_000))
            .SetTrainingTimeInSeconds(2).SetMaxTrials(10).RunAsync();
        Assert.IsTrue(clock.Elapsed.TotalSeconds < 2.2, $"took {clock.Elapsed.TotalSeconds:F2} s");
        Assert.AreEqual(2, result.Trials.Count);
        Assert.AreEqual(TrialStatus.Cancelled, result.Trials[1].Status);
        Assert.AreEqual(0, result.BestTrial.Id);
    }

    [TestMethod]
    public async Task CallerCancellationStopsTheSweepAndReturnsTheBestSoFar()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(700));
        var clock = Stopwatch.StartNew();
        var result = await Sweep((p, ct) => Sleep(p, ct, 200)).SetMaxTrials(100).RunAsync(cts.Token);
        // 0.7 s token + one 0.2 s trial, with slack for a busy machine
        Assert.IsTrue(clock.Elapsed.TotalSeconds < 1.5, $"took {clock.Elapsed.TotalSeconds:F2} s");
        Assert.IsTrue(result.Trials.Count is >= 2 and <= 5, $"{result.Trials.Count} trials");
    }

    [TestMethod]
    public async Task MaxTrialsIsRespected()
    {
        var result = await Sweep((p, _) => new TrialOutcome(0.5)).SetMaxTrials(7).RunAsync();
        Assert.AreEqual(7, result.Trials.Count);
    }

    [TestMethod]
    public async Task FailedTrialsAreRecordedAndTheSweepGoesOn()
    {
        var events = new List<SweepEvent>();
        var result = await Sweep((p, _) => p.Method == "ia3" ? throw new InvalidDataException("boom")
                : Convert.ToInt32(p.Values["Rank"]) == 16 ? new TrialOutcome(double.NaN) : new TrialOutcome(0.7))
            .SetMaxTrials(20).SetMonitor(events.Add).RunAsync();
        Assert.AreEqual(20, result.Trials.Count);
        var thrown = result.Trials.Where(t => t.Parameters.Method == "ia3").ToList();
        Assert.IsTrue(thrown.Count > 0);
        Assert.IsTrue(thrown.All(t => t.Status == TrialStatus.Failed && t.Error!.Contains("boom")));
        var nan = result.Trials
            .Where(t => t.Parameters.Method == "lora" && Convert.ToInt32(t.Parameters.Values["Rank"]) == 16).ToList();
        Assert.IsTrue(nan.Count > 0 && nan.All(t => t.Status == TrialStatus.Failed && t.Error!.Contains("NaN")));
        Assert.AreEqual(0.7, result.BestTrial.Metric);
        Assert.AreEqual(40, events.Count);
        Assert.AreEqual(SweepEventKind.TrialStarted, events[0].Kind);
        Assert.AreEqual(SweepEventKind.TrialEnded, events[1].Kind);
        Assert.IsNotNull(events[^1].BestSoFar);
    }

    [TestMethod]
    public async Task NoSucceededTrialIsAClearError()
    {
        var e = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            Sweep((p, _) => throw new InvalidDataException("always")).SetMaxTrials(3).RunAsync());
        StringAssert.Contains(e.Message, "No trial succeeded");
        StringAssert.Contains(e.Message, "always");
        await Assert.ThrowsExactlyAsync<InvalidOperationException>(
            () => Sweep((p, _) => new TrialOutcome(1)).RunAsync()); // no budget
    }

    [TestMethod]
    public async Task ResumeSkipsFinishedTrials()
    {
        using var temp = new EmbeddedOnnx.TempFolder();
        foreach (var tuner in new Func<PeftTuner>[] { () => PeftTuner.CostFrugal(5), () => PeftTuner.Random(5) })
        {
            string folder = Path.Combine(temp.Path, tuner().ToString());
            int calls = 0;
            TrialOutcome Count(TrialParameters p, CancellationToken _)
            {
                calls++; return new TrialOutcome(1 - SweepTunerTests.Objective(p) / 10);
            }
            var first = await Sweep(Count, tuner()).SetMaxTrials(6).SetCheckpointFolder(folder).RunAsync();
            Assert.AreEqual(6, calls);
            calls = 0;
            var second = await Sweep(Count, tuner()).SetMaxTrials(10).SetCheckpointFolder(folder).RunAsync();
            Assert.AreEqual(4, calls);
            Assert.IsTrue(second.Trials.Take(6).All(t => t.FromCheckpoint));
            CollectionAssert.AreEqual(first.Trials.Select(t => t.Parameters.ToJson()).ToList(),
                second.Trials.Take(6).Select(t => t.Parameters.ToJson()).ToList());
            calls = 0;
            var plain = await Sweep(Count, tuner()).SetMaxTrials(10).RunAsync();
            CollectionAssert.AreEqual(plain.Trials.Select(t => t.Parameters.ToJson()).ToList(),
                second.Trials.Select(t => t.Parameters.ToJson()).ToList());
            Assert.AreEqual(10, File.ReadAllLines(Path.Combine(folder, "trials.jsonl")).Length);
        }
    }

    [TestMethod]
    public void SeveralRefitsKeepTheDefaultConfigurationInTheLastPlaceWhenTheSearchRanIt()
    {
        static TrialParameters Lora(double lr, int rank, int epochs = 1) =>
            new("lora", new Dictionary<string, object> { ["LearningRate"] = lr, ["Epochs"] = epochs, ["Rank"] = rank });
        static TrialResult Ran(int id, TrialParameters p, double accuracy) =>
            new() { Id = id, Parameters = p, Metric = accuracy, Status = TrialStatus.Succeeded };
        // The space's defaults: lr 2e-3, rank 8 (epochs aside: a refit sets its own). Trial 0 ran them at two epochs.
        var trials = new List<TrialResult>
        {
            Ran(0, Lora(2e-3, 8, epochs: 2), 0.855), Ran(1, Lora(1e-2, 4), 0.871), Ran(2, Lora(5e-3, 16), 0.865),
            Ran(3, Lora(3e-3, 16), 0.860), new() { Id = 4, Parameters = Lora(1e-4, 4), Status = TrialStatus.Failed },
        };
        int[] Ids(PeftSweep sweep, int count) => [.. sweep.RefitConfigurations(trials, count).Select(t => t.Id)];
        var sweep = new MLContext(1).Peft().CreateSweep().SetSearchSpace(SmallSpace()).SetMetric(PeftMetric.Accuracy);

        CollectionAssert.AreEqual(new[] { 1 }, Ids(sweep.SetRefit(0.5, 1), 1),
            "one refit is the best configuration alone");
        CollectionAssert.AreEqual(new[] { 1, 0 }, Ids(sweep.SetRefit(0.5, 2), 2),
            "the default takes the second place from trial 2");
        CollectionAssert.AreEqual(new[] { 1, 2, 0 }, Ids(sweep.SetRefit(0.5, 3), 3));
        CollectionAssert.AreEqual(new[] { 1, 2 }, Ids(sweep.SetRefit(0.5, 2, keepDefault: false), 2),
            "or the two best without it");
        // Already among the best: nothing moves. Never run (here: the fourth trial ran ia3's defaults): nothing to
        // keep.
        trials[0] = Ran(0, Lora(2e-3, 8), 0.880);
        CollectionAssert.AreEqual(new[] { 0, 1 }, Ids(sweep.SetRefit(0.5, 2), 2));
        trials[0] = Ran(0, Lora(2e-3, 4), 0.855);
        CollectionAssert.AreEqual(new[] { 1, 2 }, Ids(sweep.SetRefit(0.5, 2), 2));
        // Fewer distinct configurations than refits: the best are trained again, the default among them.
        trials = [Ran(0, Lora(2e-3, 8), 0.850), Ran(1, Lora(1e-2, 4), 0.871)];
        CollectionAssert.AreEqual(new[] { 1, 0, 1 }, Ids(sweep.SetRefit(0.5, 3), 3));
    }

    [TestMethod]
    public void AnAllDataRefitIsDroppedWhenItScoresWorseThanItsTrialOnTheSameRows()
    {
        // Higher is better for accuracy, lower for log-loss and RMSE; a tie keeps the refit, NaN drops it.
        Assert.IsTrue(PeftSweep.TrainedWorse(PeftMetric.Accuracy, 0.775, 0.838));
        Assert.IsFalse(PeftSweep.TrainedWorse(PeftMetric.Accuracy, 0.910, 0.834));
        Assert.IsFalse(PeftSweep.TrainedWorse(PeftMetric.Accuracy, 0.834, 0.834));
        Assert.IsTrue(PeftSweep.TrainedWorse(PeftMetric.LogLoss, 0.50, 0.40));
        Assert.IsFalse(PeftSweep.TrainedWorse(PeftMetric.LogLoss, 0.30, 0.40));
        Assert.IsTrue(PeftSweep.TrainedWorse(PeftMetric.Rmse, double.NaN, 0.40));
    }

    [TestMethod]
    public void ATrialIsExpectedToTakeTheMedianSecondsPerEpochOfTheSucceededSearchTrialsTimesItsEpochs()
    {
        static TrialParameters Point(int? epochs) => new("lora", epochs is { } e
            ? new Dictionary<string, object> { ["Epochs"] = e } : new Dictionary<string, object>());
        static TrialResult Done(double seconds, int? epochs, TrialStatus status = TrialStatus.Succeeded,
            bool refit = false) =>
            new() { Parameters = Point(epochs), Duration = TimeSpan.FromSeconds(seconds), Status = status,
                Refit = refit };
        Assert.IsNull(PeftSweep.ExpectedSeconds([], Point(1)), "nothing to go on");
        Assert.IsNull(PeftSweep.ExpectedSeconds([Done(5, 1, TrialStatus.Failed)], Point(1)),
            "failed trials do not count");
        // 90, 100 and 110 s an epoch; the failed trial, the pruned one and the refit are left out.
        var trials = new List<TrialResult>
        {
            Done(100, 1), Done(220, 2), Done(5, 1, TrialStatus.Failed), Done(90, null), Done(20, 3, TrialStatus.Pruned),
            Done(600, 1, refit: true),
        };
        Assert.AreEqual(300, PeftSweep.ExpectedSeconds(trials, Point(3))!.Value, 1e-9);
        Assert.AreEqual(100, PeftSweep.ExpectedSeconds(trials, Point(null))!.Value, 1e-9, "no epochs counts as one");
        trials.Add(Done(250, 2));
        Assert.AreEqual(2 * (100 + 110) / 2.0, PeftSweep.ExpectedSeconds(trials, Point(2))!.Value, 1e-9,
            "an even count takes the middle two");
    }

    [TestMethod]
    public void CrossFitFoldsPartitionTheValidationRowsIntoEqualRandomFolds()
    {
        var folds = PeftSweep.CrossFitFolds(1001, 3)!;
        Assert.AreEqual(1001, folds.Length);
        CollectionAssert.AreEqual(new[] { 334, 334, 333 },
            Enumerable.Range(0, 3).Select(k => folds.Count(f => f == k)).ToArray());
        // Shuffled, not blocks or stripes: a sorted validation file still gives every fold rows from all of it.
        Assert.IsTrue(Enumerable.Range(0, 3).All(k => folds.Take(500).Count(f => f == k) is > 100 and < 230));
        Assert.IsFalse(folds.Take(30).Select((f, i) => f == i % 3).All(x => x), "not row index modulo folds");
        CollectionAssert.AreEqual(folds, PeftSweep.CrossFitFolds(1001, 3), "the same folds every time");
        Assert.IsNull(PeftSweep.CrossFitFolds(1001, 1), "a single refit trains on all the validation rows");
        Assert.IsNull(PeftSweep.CrossFitFolds(5, 3), "folds of fewer than two rows are not drawn");
    }

    [TestMethod]
    public async Task LeaderboardAsDataViewAndCsv()
    {
        int i = 0;
        var result = await Sweep((p, _) => ++i == 2 ? throw new InvalidOperationException("bad, \"quoted\"")
            : new TrialOutcome(i / 10.0, null, 100 * i))
            .SetMaxTrials(4).RunAsync();
        var ml = new MLContext(1);
        var view = result.ToDataView(ml);
        var metrics = view.GetColumn<double>("Metric").ToArray();
        Assert.AreEqual(4, metrics.Length);
        Assert.AreEqual(0.4, metrics[0], 1e-12);
        Assert.AreEqual("Failed", view.GetColumn<string>("Status").Last());
        using var temp = new EmbeddedOnnx.TempFolder();
        string csv = Path.Combine(temp.Path, "board.csv");
        result.WriteCsv(csv);
        var lines = File.ReadAllLines(csv);
        Assert.AreEqual(5, lines.Length);
        StringAssert.StartsWith(lines[0],
            "Id,Method,Parameters,Metric,TrainableParameters,DurationSeconds,PeakWorkingSetBytes,Status,Error");
        StringAssert.Contains(lines[^1], "InvalidOperationException: bad, \"\"quoted\"\"\"");
        Assert.IsTrue(result.Trials.All(t => t.PeakWorkingSetBytes > 0));
    }

    [TestMethod]
    public async Task SuccessiveHalvingStopsTrialsBelowTheTopThirdOfTheirRung()
    {
        int epochsRun = 0;
        TrialOutcome Train(TrialParameters p, TrialReporter reporter, CancellationToken _)
        {
            double quality = 1 - SweepTunerTests.Objective(p) / 10;
            for (int epoch = 1; epoch <= 9; epoch++)
            {
                epochsRun++;
                reporter.ReportEpoch(epoch, -quality * epoch / 9);
            }
            return new TrialOutcome(quality);
        }
        var result = await Sweep((p, _) => new TrialOutcome(0)).SetTrialEvaluation(Train)
            .SetEarlyStopping(reductionFactor: 3).SetMaxTrials(12).RunAsync();
        var pruned = result.Trials.Where(t => t.Status == TrialStatus.Pruned).ToList();
        Assert.IsTrue(pruned.Count >= 4, $"{pruned.Count} pruned");
        Assert.IsTrue(pruned.All(t => t.Error!.Contains("successive halving")));
        Assert.IsTrue(epochsRun < 12 * 9 * 2 / 3, $"{epochsRun} epochs");
        var succeeded = result.Trials.Where(t => t.Status == TrialStatus.Succeeded).ToList();
        Assert.AreEqual(succeeded.Max(t => t.Metric), result.BestTrial.Metric);
        Assert.IsTrue(pruned.All(p => 1 - SweepTunerTests.Objective(p.Parameters) / 10 <= result.BestTrial.Metric));
    }

    [TestMethod]
    public async Task ResumedSuccessiveHalvingPrunesAsAnUninterruptedSweep()
    {
        static TrialOutcome Train(TrialParameters p, TrialReporter reporter, CancellationToken _)
        {
            double quality = 1 - SweepTunerTests.Objective(p) / 10;
            for (int epoch = 1; epoch <= 9; epoch++) reporter.ReportEpoch(epoch, -quality * epoch / 9);
            return new TrialOutcome(quality);
        }
        PeftSweep Halving() => Sweep((p, _) => new TrialOutcome(0), PeftTuner.Random(3)).SetTrialEvaluation(Train)
            .SetEarlyStopping(reductionFactor: 3);

        var plain = await Halving().SetMaxTrials(14).RunAsync();
        using var temp = new EmbeddedOnnx.TempFolder();
        await Halving().SetMaxTrials(7).SetCheckpointFolder(temp.Path).RunAsync();
        var resumed = await Halving().SetMaxTrials(14).SetCheckpointFolder(temp.Path).RunAsync();

        Assert.IsTrue(resumed.Trials.Take(7).All(t => t.FromCheckpoint));
        Assert.IsTrue(resumed.Trials.Take(7).All(t => t.EpochLosses.Count > 0), "epoch losses are checkpointed");
        // Later trials are judged against the rungs the checkpointed trials filled, exactly as without the
        // interruption.
        Assert.IsTrue(plain.Trials.Skip(7).Any(t => t.Status == TrialStatus.Pruned),
            "the comparison needs pruned trials after the restart");
        CollectionAssert.AreEqual(plain.Trials.Select(t => t.Status).ToList(),
            resumed.Trials.Select(t => t.Status).ToList());
        CollectionAssert.AreEqual(plain.Trials.Select(t => t.Error ?? "").ToList(),
            resumed.Trials.Select(t => t.Error ?? "").ToList());
    }

    [TestMethod]
    public async Task ATrialIsNotPrunedAfterItsLastEpochButItsLossStillJoinsTheRung()
    {
        // Odd trials train one epoch, even trials three; rung 1 is shared by both.
        int id = 0;
        TrialOutcome Train(TrialParameters p, TrialReporter reporter, CancellationToken _)
        {
            int epochs = id++ % 2 == 0 ? 3 : 1;
            double quality = 1 - SweepTunerTests.Objective(p) / 10;
            for (int epoch = 1; epoch <= epochs; epoch++)
                reporter.ReportEpoch(epoch, -quality * epoch / 3, isLastEpoch: epoch == epochs);
            return new TrialOutcome(quality);
        }
        var result = await Sweep((p, _) => new TrialOutcome(0), PeftTuner.Random(7)).SetTrialEvaluation(Train)
            .SetEarlyStopping(reductionFactor: 3).SetMaxTrials(16).RunAsync();
        var oneEpoch = result.Trials.Where(t => t.Id % 2 == 1).ToList();
        Assert.IsTrue(oneEpoch.All(t => t.Status == TrialStatus.Succeeded),
            string.Join(", ", oneEpoch.Select(t => t.Status)));
        Assert.IsTrue(result.Trials.Any(t => t.Id % 2 == 0 && t.Status == TrialStatus.Pruned),
            "three-epoch trials are still pruned at rung 1");
    }

    private sealed class TrackedModel : ITransformer, IDisposable
    {
        public bool Disposed { get; private set; }
        public bool IsRowToRowMapper => false;
        public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => inputSchema;
        public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => throw new NotSupportedException();
        public void Save(ModelSaveContext ctx) => throw new NotSupportedException();
        public IDataView Transform(IDataView input) => input;
        public void Dispose() => Disposed = true;
    }

    [TestMethod]
    public async Task ModelsThatAreNotTheBestAreDisposedAsTheSweepGoes()
    {
        double[] metrics = [0.1, 0.3, 0.2, 0.4, 0.35];
        var models = new List<TrackedModel>();
        var result = await Sweep((p, _) =>
        {
            var m = new TrackedModel();
            models.Add(m);
            return new TrialOutcome(metrics[models.Count - 1], m);
        }).SetMaxTrials(metrics.Length).RunAsync();
        Assert.AreSame(models[3], result.BestModel);
        Assert.IsFalse(models[3].Disposed, "the best model is handed to the caller");
        CollectionAssert.AreEqual(new[] { true, true, true, false, true }, models.Select(m => m.Disposed).ToArray());
    }

    [TestMethod]
    public void ValidationScoringStopsWhenTheTrialIsCancelled()
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 100)
            .Select(i => new Microsoft.ML.Peft.Tests.Stages.TextRow { Label = "a", Text = $"row {i}" }));
        using var cts = new CancellationTokenSource();
        var view = new CancellableDataView(data, cts.Token);
        Assert.AreEqual(100, view.GetColumn<string>("Text").Count(), "passes every row through while not cancelled");
        using var cursor = view.GetRowCursor(view.Schema);
        Assert.IsTrue(cursor.MoveNext());
        cts.Cancel();
        Assert.ThrowsExactly<OperationCanceledException>(() => cursor.MoveNext());
    }
}
