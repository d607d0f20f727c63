using System.Globalization;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>
/// The search as one worker of a study (<see cref="PeftSweep.SetStorage"/>): claim a trial from the database, train it
/// with a heartbeat, write its result, until the study's budget, its tuner or the caller ends it. Any number of
/// workers on any machines can run it against the same study at once; none holds state the others need.
/// </summary>
internal sealed class StoredSearch(SweepRun run, TrialEvaluator? evaluator)
{
    private readonly SweepSettings _settings = run.Settings;
    private readonly StudySettings _study = run.Settings.Storage!;
    private readonly string _worker = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";

    public async Task<PeftSweepResult> RunAsync(CancellationToken cancellationToken)
    {
        var store = Open(_settings);
        double created = store.Open(_settings.Metric.ToString(), _settings.Tuner.ToString());
        // The budget is the study's: its time counts from the study's creation, whichever worker created it.
        double? deadline = _settings.SearchSeconds is { } seconds ? created + seconds : null;
        run.Log.Info($"Worker {_worker} joins study '{store.Study}' in {store.Location.Describe()}.");
        var evaluate = _settings.Evaluate ?? evaluator!.Evaluate;
        while (!cancellationToken.IsCancellationRequested)
        {
            var claim = store.Claim(_worker, _study.HeartbeatTimeout, _study.RetryLostTrials, _settings.MaxTrials,
                deadline, rows => TunerReplay.Next(_settings, rows));
            if (claim is not { Number: { } number, Parameters: { } parameters })
            {
                if (claim.OthersRunning == 0) { run.Log.Info($"Worker done: {claim.Reason}."); break; }
                // Another worker's trial may yet fail and be retried, or be declared lost: wait, then ask again
                // (every second at most, so that the study ends soon after its last trial; a claim is one query).
                var poll = TimeSpan.FromSeconds(Math.Min(1, _study.HeartbeatInterval.TotalSeconds));
                try { await Task.Delay(poll, cancellationToken).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                continue;
            }
            await RunTrialAsync(store, number, parameters, evaluate, deadline, cancellationToken)
                .ConfigureAwait(false);
        }
        return Result(run.Ml, store, _settings.Metric, withModel: true);
    }

    /// <summary>The study's store for these settings (the checkpoint folder resolves a relative SQLite path).</summary>
    public static StudyStore Open(SweepSettings settings) => new(
        StorageLocation.Parse(settings.Storage!.ConnectionString, settings.CheckpointFolder, "connectionString"),
        settings.Storage.Study);

    /// <summary>
    /// The study's leaderboard as it stands (finished trials only) and, when asked, its best model from the database.
    /// </summary>
    public static PeftSweepResult Result(MLContext ml, StudyStore store, PeftMetric metric, bool withModel)
    {
        var rows = store.LoadTrials();
        var trials = rows.Where(r => r.Finished).Select(r => r.ToResult()).ToList();
        var ranked = new SweepSettings { Metric = metric };
        TrialResult? best = null;
        foreach (var t in trials.Where(t => t.Status == TrialStatus.Succeeded))
            if (best is null || ranked.IsBetter(t, best)) best = t;
        if (best is null)
            throw new InvalidOperationException($"No trial of study '{store.Study}' has succeeded yet ({trials.Count} "
                + "finished): " + string.Join("; ", trials.Select(t => $"trial {t.Id} {t.Status}: {t.Error}")));
        ITransformer? model = null;
        if (withModel && store.LoadBestModel() is { } stored)
            model = ml.Model.Load(new MemoryStream(stored.Model, writable: false), out _);
        return new PeftSweepResult(metric, best, model, trials);
    }

    // The study's best, for the monitor (one read of the rows per trial, only when someone listens).
    private TrialResult? BestSoFar(StudyStore store)
    {
        TrialResult? best = null;
        foreach (var t in store.LoadTrials().Where(r => r.State == StudySchema.Complete).Select(r => r.ToResult()))
            if (best is null || _settings.IsBetter(t, best)) best = t;
        return best;
    }

    private async Task RunTrialAsync(StudyStore store, int number, TrialParameters parameters,
        Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> evaluate, double? deadline,
        CancellationToken cancellationToken)
    {
        run.Log.Info($"Trial {number} starts: {parameters.ToJson()}");
        run.Notify(SweepEventKind.TrialStarted, number, parameters, null, null);
        using var trialCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (deadline is { } d) trialCancel.CancelAfter(TimeSpan.FromSeconds(Math.Max(0, d - StudyStore.Now())));
        var halving = _settings.Halving is { } h
            ? new SuccessiveHalving(h.ReductionFactor, h.MinEpochs, (e, loss) => store.ReportEpoch(number, e, loss))
            : null;
        (TrialResult Result, ITransformer? Model, ValidationScores? Scores) outcome;
        using (new Heartbeat(store, number, _worker, _study.HeartbeatInterval, trialCancel, run.Log))
            outcome = await TrialRunner.RunAsync(number, parameters, evaluate, new TrialReporter(number, halving),
                trialCancel.Token).ConfigureAwait(false);
        var (result, model, _) = outcome;
        try
        {
            Func<byte[]>? bytes = model is null || _settings.Train is null ? null : () =>
            {
                using var stream = new MemoryStream();
                run.Ml.Model.Save(model, _settings.Train.Schema, stream);
                return stream.ToArray();
            };
            bool kept = store.Finish(result, _worker, bytes, _settings.IsBetter);
            run.Log.Info(string.Format(CultureInfo.InvariantCulture, "Trial {0} {1}: {2} {3:F4} in {4:F1} s{5}{6}",
                number, result.Status, _settings.Metric, result.Metric, result.Duration.TotalSeconds,
                result.Error is null ? "" : $" ({result.Error})",
                kept ? "" : "; not recorded: another worker declared it lost (no heartbeat)"));
            run.Notify(SweepEventKind.TrialEnded, number, parameters, result,
                _settings.Monitor is null ? null : BestSoFar(store));
        }
        finally
        {
            // The study keeps the best model's bytes; this process needs none of its trained models.
            ModelPool.DisposeModel(model);
            Runtime.NativeHeap.Release();
        }
    }
}

/// <summary>
/// Refreshes a running trial's heartbeat on a timer, so that other workers can tell a slow trial from a dead worker.
/// When the row is no longer this worker's (it was declared lost), the trial is cancelled: its result would be dropped.
/// </summary>
internal sealed class Heartbeat : IDisposable
{
    private readonly Timer _timer;

    public Heartbeat(StudyStore store, int number, string worker, TimeSpan interval, CancellationTokenSource trial,
        IChannel log)
    {
        _timer = new Timer(_ =>
        {
            try
            {
                if (!store.Beat(number, worker))
                {
                    log.Warning($"Trial {number} was declared lost by another worker; stopping it.");
                    trial.Cancel();
                }
            }
            // A database that is briefly unreachable must not kill the trial; the next beat tries again.
            catch (Exception e) when (e is InvalidOperationException or System.Data.Common.DbException)
            {
                log.Warning($"Heartbeat of trial {number} failed: {e.Message}");
            }
            catch (ObjectDisposedException) { }
        }, null, interval, interval);
    }

    public void Dispose()
    {
        using var done = new ManualResetEvent(false);
        // Waits for a beat in flight, so that none lands after the result is written.
        if (_timer.Dispose(done)) done.WaitOne();
    }
}
