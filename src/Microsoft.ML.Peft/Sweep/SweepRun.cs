using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// One run of a <see cref="PeftSweep"/>: what its phases share (the settings, the log, the clock, the checkpoint, the
/// leaderboard and the models) and their order: the search, then the refit, then the ensemble.
/// </summary>
internal sealed class SweepRun : IDisposable
{
    private readonly TrialEvaluator? _evaluator;

    private SweepRun(MLContext ml, IHost host, SweepSettings settings)
    {
        settings.Check();
        Ml = ml;
        Host = host;
        Settings = settings;
        _evaluator = settings.CreateEvaluator(ml);
        // With storage the study's rows are the checkpoint; the folder only holds a default study.db.
        Checkpoint = settings.CheckpointFolder is null || settings.Storage is not null
            ? null : new TrialCheckpoint(settings.CheckpointFolder);
        Log = host.Start("Sweep");
        Log.Info($"Sweep: tuner {settings.Tuner}, metric {settings.Metric}, budget "
            + $"{(settings.Seconds is { } s ? $"{s:F0} s" : "no time limit")}, "
            + $"{(settings.MaxTrials is { } n ? $"{n} trials" : "no trial limit")}"
            + (Checkpoint is null ? "." : $", checkpoint {Checkpoint.Folder} ({Checkpoint.Count} finished trial(s))."));
        try { settings.Tuner.Reset(settings.Space); }
        catch
        {
            Log.Dispose();
            throw;
        }
        Models = new ModelPool(ml, settings, Checkpoint);
        Clock = Stopwatch.StartNew();
    }

    public MLContext Ml { get; }

    public IHost Host { get; }

    public SweepSettings Settings { get; }

    public IChannel Log { get; }

    /// <summary>Started with the search; the time budget counts from here.</summary>
    public Stopwatch Clock { get; }

    public TrialCheckpoint? Checkpoint { get; }

    /// <summary>The leaderboard: every row in order of its id (a row's id is its index).</summary>
    public List<TrialResult> Trials { get; } = [];

    public ModelPool Models { get; }

    /// <summary>
    /// Checks the settings, opens the checkpoint and the log and resets the tuner; throws
    /// <see cref="InvalidOperationException"/> for settings that cannot run together.
    /// </summary>
    public static SweepRun Start(MLContext ml, IHost host, SweepSettings settings) => new(ml, host, settings);

    /// <summary>Runs the phases and returns the best model; throws when no trial succeeded.</summary>
    public async Task<PeftSweepResult> RunAsync(CancellationToken cancellationToken)
    {
        if (Settings.Storage is not null)
            return await new Storage.StoredSearch(this, _evaluator).RunAsync(cancellationToken).ConfigureAwait(false);
        var search = await new SearchPhase(this, _evaluator).RunAsync(cancellationToken).ConfigureAwait(false);
        var ensembles = new EnsemblePhase(this);
        if (Models.Best is not null && _evaluator is not null && Settings.RefitFraction is not null
            && !cancellationToken.IsCancellationRequested)
            await new RefitPhase(this, _evaluator, ensembles).RunAsync(search, cancellationToken).ConfigureAwait(false);
        if (Models.Best is not null && Models.Candidates.Count >= 2 && !cancellationToken.IsCancellationRequested)
            ensembles.Select();
        Models.ReleaseCandidates();

        if (Models.Best is not { } best)
            throw new InvalidOperationException($"No trial succeeded ({Trials.Count} run): "
                + string.Join("; ", Trials.Select(t => $"trial {t.Id} {t.Status}: {t.Error}")));
        Models.LoadReplayedBest();
        Log.Info($"Sweep done: {Trials.Count} trial(s) in {Clock.Elapsed.TotalSeconds:F1} s; best trial {best.Id} "
            + $"({Settings.Metric} {best.Metric:F4}): {best.Parameters.ToJson()}");
        return new PeftSweepResult(Settings.Metric, best, Models.BestModel, Trials);
    }

    /// <summary>Reports a trial's start or end to the monitor, with the best result at that moment.</summary>
    public void Notify(SweepEventKind kind, int id, TrialParameters parameters, TrialResult? result,
        TrialResult? best) =>
        Settings.Monitor?.Invoke(new SweepEvent(kind, id, parameters, result, best));

    /// <summary>A row as the log names it: its kind, id and metric.</summary>
    public static string Describe(TrialResult t) => string.Create(CultureInfo.InvariantCulture,
        $"{(t.Ensemble.Count > 0 ? "ensemble" : t.Refit ? "refit" : "trial")} {t.Id} ({t.Metric:F4})");

    public void Dispose() => Log.Dispose();
}
