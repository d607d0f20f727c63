using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// An AutoML-style sweep over PEFT methods and their hyper-parameters (create it with <c>mlContext.Peft().CreateSweep()</c>).
/// Each trial trains a stage on the training set and scores the validation set; the tuner proposes the next point from the
/// results so far. The budget is wall-clock seconds and/or a trial count; the running trial is cancelled cooperatively when
/// the time runs out. Failed trials are recorded and the sweep goes on. Progress goes to <c>MLContext.Log</c> and to an optional monitor.
/// </summary>
public sealed class PeftSweep
{
    private readonly MLContext _ml;
    private readonly IHost _host;
    private IDataView? _train, _validation;
    private (int Folds, string? SamplingKeyColumn)? _crossValidation;
    private string _label = "Label", _text = "Sentence1";
    private string? _text2;
    private PeftMetric _metric = PeftMetric.Accuracy;
    private PeftSearchSpace _space = PeftSearchSpace.CreateDefault();
    private PeftTuner _tuner = PeftTuner.CostFrugal(0);
    private double? _seconds;
    private int? _maxTrials;
    private string? _checkpoint;
    private BaseModel? _baseModel;
    private Action<PeftTextOptions>? _configure;
    private Action<SweepEvent>? _monitor;
    private Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome>? _evaluate;
    private (int ReductionFactor, int MinEpochs)? _halving;
    private double? _refitFraction;
    private int _refitCount = 1;
    private bool _refitOnAllData;
    private bool _refitKeepsDefault = true;
    private int? _ensembleCandidates;

    internal PeftSweep(MLContext ml)
    {
        _ml = ml;
        _host = ((IHostEnvironment)ml).Register(nameof(PeftSweep));
    }

    /// <summary>Training and validation data (the validation set is scored once per trial).</summary>
    public PeftSweep SetDataset(IDataView train, IDataView validation)
    {
        _train = train ?? throw new ArgumentNullException(nameof(train));
        _validation = validation ?? throw new ArgumentNullException(nameof(validation));
        _crossValidation = null;
        return this;
    }

    /// <summary>
    /// Cross-validation, as ML.NET AutoML's <c>SetDataset(data, fold)</c>: the rows are split once into
    /// <paramref name="folds"/> folds (<c>mlContext.Data.CrossValidationSplit</c> with a fixed seed, so a resumed sweep sees
    /// the same folds); every trial trains one stage per fold and is scored on the out-of-fold predictions of all rows.
    /// The trial's model averages its fold stages (a <see cref="PeftEnsembleTransformer"/>, bagging), so it costs
    /// <paramref name="folds"/> times the training, memory and scoring of one stage. Successive halving judges a trial on
    /// its first fold; <see cref="SetRefit"/> needs a validation set and is refused.
    /// </summary>
    /// <param name="data">All labelled rows.</param>
    /// <param name="folds">Number of folds, 2 to 20. Default 5.</param>
    /// <param name="samplingKeyColumnName">Rows with equal values in this column stay in one fold (e.g. a document id); null for a random split.</param>
    public PeftSweep SetDataset(IDataView data, int folds = 5, string? samplingKeyColumnName = null)
    {
        _train = data ?? throw new ArgumentNullException(nameof(data));
        if (folds is < 2 or > 20) throw new ArgumentOutOfRangeException(nameof(folds), $"must be 2 to 20, got {folds}.");
        if (samplingKeyColumnName is not null && data.Schema.GetColumnOrNull(samplingKeyColumnName) is null)
            throw new ArgumentException($"Sampling key column '{samplingKeyColumnName}' is not in the data.", nameof(samplingKeyColumnName));
        _validation = null;
        _crossValidation = (folds, samplingKeyColumnName);
        return this;
    }

    /// <summary>
    /// The label column. Classification: raw values (then <c>MapValueToKey</c> goes in front of the stage in every trial and in
    /// the best model) or already a key (the stage alone). Regression: a float column.
    /// </summary>
    public PeftSweep SetLabel(string labelColumnName)
    {
        _label = labelColumnName ?? throw new ArgumentNullException(nameof(labelColumnName));
        return this;
    }

    /// <summary>The text column, and an optional second one for sentence pairs.</summary>
    public PeftSweep SetText(string sentence1ColumnName, string? sentence2ColumnName = null)
    {
        _text = sentence1ColumnName ?? throw new ArgumentNullException(nameof(sentence1ColumnName));
        _text2 = sentence2ColumnName;
        return this;
    }

    /// <summary>The metric to optimise; regression metrics make every trial a regression stage. Default <see cref="PeftMetric.Accuracy"/>.</summary>
    public PeftSweep SetMetric(PeftMetric metric)
    {
        _metric = metric;
        return this;
    }

    /// <summary>The search space. Default <see cref="PeftSearchSpace.CreateDefault"/>.</summary>
    public PeftSweep SetSearchSpace(PeftSearchSpace space)
    {
        _space = space ?? throw new ArgumentNullException(nameof(space));
        return this;
    }

    /// <summary>The tuner. Default <see cref="PeftTuner.CostFrugal"/> with seed 0.</summary>
    public PeftSweep SetTuner(PeftTuner tuner)
    {
        _tuner = tuner ?? throw new ArgumentNullException(nameof(tuner));
        return this;
    }

    /// <summary>Wall-clock budget; the trial running when it ends is cancelled. At least one of this and <see cref="SetMaxTrials"/> is needed.</summary>
    public PeftSweep SetTrainingTimeInSeconds(double seconds)
    {
        if (!(seconds > 0)) throw new ArgumentOutOfRangeException(nameof(seconds), "must be positive.");
        _seconds = seconds;
        return this;
    }

    /// <summary>Most trials to run (replayed checkpoint trials count).</summary>
    public PeftSweep SetMaxTrials(int maxTrials)
    {
        if (maxTrials < 1) throw new ArgumentOutOfRangeException(nameof(maxTrials), "must be at least 1.");
        _maxTrials = maxTrials;
        return this;
    }

    /// <summary>
    /// Folder for <c>trials.jsonl</c> (one line per finished trial) and <c>best-model.zip</c>. A sweep restarted with the
    /// same folder, space and tuner seed replays the tuner and skips the trials that already finished.
    /// </summary>
    public PeftSweep SetCheckpointFolder(string folder)
    {
        _checkpoint = folder ?? throw new ArgumentNullException(nameof(folder));
        return this;
    }

    /// <summary>The pretrained encoder of every trial. Default null: the embedded MiniLM.</summary>
    public PeftSweep SetBaseModel(BaseModel baseModel)
    {
        _baseModel = baseModel;
        return this;
    }

    /// <summary>Adjusts every trial's stage options before the trial's parameters are applied (e.g. precision, token budget).</summary>
    public PeftSweep ConfigureOptions(Action<PeftTextOptions> configure)
    {
        _configure = configure;
        return this;
    }

    /// <summary>A callback for trial start and end (with the metric and the running best).</summary>
    public PeftSweep SetMonitor(Action<SweepEvent> monitor)
    {
        _monitor = monitor;
        return this;
    }

    /// <summary>
    /// Replaces training with a custom evaluation of a point (for tests, or to train something else); it must honour
    /// the token. <c>SetDataset</c> is then optional.
    /// </summary>
    public PeftSweep SetTrialEvaluation(Func<TrialParameters, CancellationToken, TrialOutcome> evaluate)
    {
        ArgumentNullException.ThrowIfNull(evaluate);
        _evaluate = (p, _, ct) => evaluate(p, ct);
        return this;
    }

    /// <summary>
    /// As <see cref="SetTrialEvaluation(Func{TrialParameters, CancellationToken, TrialOutcome})"/>, with a reporter for
    /// per-epoch validation losses so that successive halving can stop the trial.
    /// </summary>
    public PeftSweep SetTrialEvaluation(Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> evaluate)
    {
        _evaluate = evaluate ?? throw new ArgumentNullException(nameof(evaluate));
        return this;
    }

    /// <summary>
    /// Stops bad trials early with asynchronous successive halving over epochs: at epochs <paramref name="minEpochs"/>·η^k a
    /// trial goes on only when its validation result is in the top 1/η of those seen at that epoch. With the default
    /// trial evaluation this sets the stage's <see cref="PeftTextOptions.ValidationSet"/> (each epoch is scored: accuracy
    /// for classification, RMSE for regression, and the best epoch's weights are kept). Pruned trials are recorded as
    /// <see cref="TrialStatus.Pruned"/> and count as failures for the tuner.
    /// </summary>
    /// <param name="reductionFactor">η, at least 2.</param>
    /// <param name="minEpochs">The first rung, at least 1.</param>
    public PeftSweep SetEarlyStopping(int reductionFactor = 3, int minEpochs = 1)
    {
        if (reductionFactor < 2) throw new ArgumentOutOfRangeException(nameof(reductionFactor), "must be at least 2.");
        if (minEpochs < 1) throw new ArgumentOutOfRangeException(nameof(minEpochs), "must be at least 1.");
        _halving = (reductionFactor, minEpochs);
        return this;
    }

    /// <summary>
    /// Reserves <paramref name="budgetFraction"/> of the time budget to retrain the best configurations once the search
    /// ends (as FLAML's retraining of the best config): epochs unbounded, <see cref="PeftTextOptions.MaxTrainingTime"/> =
    /// the refit's share of the reserve so the learning rate decays by the clock, every epoch scored on the validation set
    /// and the best epoch kept. Search trials are short; this gives the winners the long training a fixed configuration
    /// would get. With <paramref name="configurations"/> &gt; 1 the reserve is split equally among the best distinct
    /// configurations (trials that differ only in epochs count as one, since a refit sets its own), each trained from a
    /// new seed; when the search found fewer, the best are trained again. Together with <see cref="SetEnsemble"/> this
    /// gives the ensemble several well-trained, differently initialised members, which average better than one model
    /// trained for the whole reserve. A refit becomes the best model when its validation metric is at least the best so
    /// far; it is a leaderboard row with <see cref="TrialResult.Refit"/> set and is not checkpointed (a resumed sweep
    /// refits again). The search does not start a trial it expects to outlast its share of the budget (the median
    /// seconds per epoch of its trials so far times the trial's epochs), since the trial would be cancelled and its time
    /// lost: the refits start then and get that time. Needs <see cref="SetTrainingTimeInSeconds"/> and the default trial
    /// evaluation.
    /// <para>With <paramref name="onAllData"/> (as FLAML's <c>retrain_full</c> and AutoGluon's <c>refit_full</c>) the refits
    /// also learn from the validation rows, and become the best model without being compared with the trials (a trial's
    /// metric is the best of many short runs on those rows, so it is biased upwards and would win unfairly). Several
    /// refits are cross-fitted: the validation rows are split into as many random folds (a fixed seed), and refit k trains
    /// on the training rows and every fold but the k-th, keeps its best epoch on fold k and reports its metric there. The
    /// best model is their equal-weight average, so every validation row trains all but one of its members; its metric is
    /// that of the out-of-fold scores (each row scored by the refit that held it out), as a cross-validated trial's. A refit
    /// that does worse on its fold than its trial did on the same rows has trained badly (a learning rate that suits one
    /// epoch and not ten, say) and is dropped, recorded as failed. A single refit trains on all the validation rows and
    /// keeps its last epoch; its metric is in-sample (flagged by <see cref="TrialResult.TrainedOnValidation"/>), and the
    /// same check compares it with its trial on rows it trained on, which catches only a collapse. When all refits are
    /// dropped the best trial stays the best model. This cannot be combined with <see cref="SetEnsemble"/>, whose weights
    /// are chosen on the validation rows.</para>
    /// <para>With several configurations and <paramref name="keepDefault"/>, the search space's default configuration
    /// (its first method with every declared default, where the cost-frugal tuner starts) is one of them whenever the
    /// search ran it: it takes the last place when it is not among the best. Short trials tell the best configurations
    /// apart by less than the noise of a validation set, and they favour high learning rates that learn fast in one epoch
    /// and degrade over the refit's many (short-horizon bias); the default, chosen across tasks, is the hedge.</para>
    /// </summary>
    /// <param name="budgetFraction">Share of the time budget kept for the refits, in (0, 1). Default 0.25.</param>
    /// <param name="configurations">How many of the best configurations to retrain, 1 to 16. Default 1.</param>
    /// <param name="onAllData">Train the refits on the training and validation rows together. Default false.</param>
    /// <param name="keepDefault">With several configurations, refit the default configuration too when the search ran
    /// it. Default true.</param>
    public PeftSweep SetRefit(double budgetFraction = 0.25, int configurations = 1, bool onAllData = false, bool keepDefault = true)
    {
        if (!(budgetFraction > 0 && budgetFraction < 1)) throw new ArgumentOutOfRangeException(nameof(budgetFraction), "must be in (0, 1).");
        if (configurations is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(configurations), $"must be 1 to 16, got {configurations}.");
        _refitFraction = budgetFraction;
        _refitCount = configurations;
        _refitOnAllData = onAllData;
        _refitKeepsDefault = keepDefault;
        return this;
    }

    /// <summary>
    /// After the search (and the refit), combines the best models into a weighted ensemble when that validates better
    /// than the best single model: greedy ensemble selection with replacement (Caruana et al. 2004, as the weighted
    /// ensembles of AutoGluon and auto-sklearn). The <paramref name="candidates"/> best succeeded models of this run, the
    /// refit included, are kept in memory as the sweep goes; selection adds one of them at a time (4 × candidates
    /// additions at most) to an average of class probabilities, or of regression scores, on the validation set, and keeps
    /// the best average seen. The result is a <see cref="MLNet.PeftEnsembleTransformer"/> (behind the label's key mapping,
    /// as a trial's model), a leaderboard row with <see cref="TrialResult.Ensemble"/> set, and the best model; it scores
    /// as many times slower as it has members. Trials replayed from a checkpoint are not candidates (their models were not
    /// kept). Needs the default trial evaluation.
    /// </summary>
    /// <param name="candidates">How many of the best models to keep and select from, 2 to 32. Default 5.</param>
    public PeftSweep SetEnsemble(int candidates = 5)
    {
        if (candidates is < 2 or > 32) throw new ArgumentOutOfRangeException(nameof(candidates), $"must be 2 to 32, got {candidates}.");
        _ensembleCandidates = candidates;
        return this;
    }

    /// <summary>
    /// Runs trials until the budget, the tuner or <paramref name="cancellationToken"/> ends the sweep, and returns the best so far.
    /// Throws <see cref="InvalidOperationException"/> when no trial succeeded.
    /// </summary>
    public async Task<PeftSweepResult> RunAsync(CancellationToken cancellationToken = default)
    {
        if (_seconds is null && _maxTrials is null) throw new InvalidOperationException("Set a budget: SetTrainingTimeInSeconds and/or SetMaxTrials.");
        if (_evaluate is null && (_train is null || (_validation is null && _crossValidation is null))) throw new InvalidOperationException("Call SetDataset first.");
        _space.Validate();
        if (_refitFraction is not null && _seconds is null) throw new InvalidOperationException("SetRefit needs a time budget: call SetTrainingTimeInSeconds.");
        if (_refitFraction is not null && _evaluate is not null) throw new InvalidOperationException("SetRefit needs the default trial evaluation (it retrains a stage); remove SetTrialEvaluation or SetRefit.");
        if (_ensembleCandidates is not null && _evaluate is not null) throw new InvalidOperationException("SetEnsemble needs the default trial evaluation (it averages trained stages); remove SetTrialEvaluation or SetEnsemble.");
        if (_refitOnAllData && _refitFraction is not null && _ensembleCandidates is not null) throw new InvalidOperationException("SetEnsemble chooses its weights on the validation rows, which SetRefit(onAllData: true) trains on; use one of them (several refit configurations on all the data are averaged with equal weights).");
        if (_refitFraction is not null && _crossValidation is not null) throw new InvalidOperationException("SetRefit needs a validation set, and cross-validation has none: each trial's model already averages its fold models. Use SetDataset(train, validation) or remove SetRefit.");
        var evaluator = _evaluate is null ? new TrialEvaluator(_ml, Splits(), _train!, _label, _text, _text2, _metric, _baseModel, _configure, _halving is not null) : null;
        var evaluate = _evaluate ?? evaluator!.Evaluate;
        // With a refit, the search stops early enough to leave the refit its share of the budget.
        double? searchSeconds = _seconds is { } total && _refitFraction is { } share ? total * (1 - share) : _seconds;
        var halving = _halving is { } h ? new SuccessiveHalving(h.ReductionFactor, h.MinEpochs) : null;
        var checkpoint = _checkpoint is null ? null : new TrialCheckpoint(_checkpoint);
        using var ch = _host.Start("Sweep");
        ch.Info($"Sweep: tuner {_tuner}, metric {_metric}, budget {(_seconds is { } s ? $"{s:F0} s" : "no time limit")}, {(_maxTrials is { } n ? $"{n} trials" : "no trial limit")}"
            + (checkpoint is null ? "." : $", checkpoint {checkpoint.Folder} ({checkpoint.Count} finished trial(s))."));

        _tuner.Reset(_space);
        var trials = new List<TrialResult>();
        TrialResult? best = null;
        ITransformer? bestModel = null;
        // Ensemble candidates: the best models so far with their validation scores (only with SetEnsemble).
        var pool = new List<(TrialResult Result, ITransformer Model, ValidationScores Scores)>();
        // Every succeeded trial's validation scores, so that a cross-fitted refit can be checked on its fold (a few floats a row).
        var trialScores = new Dictionary<int, ValidationScores>();
        var clock = Stopwatch.StartNew();
        // Set when the search ends because its next trial would not finish in time: the refits then get that time too.
        bool searchCutShort = false;
        for (int id = 0; ; id++)
        {
            if (_maxTrials is { } max && id >= max) break;
            if (cancellationToken.IsCancellationRequested) { ch.Info("Sweep cancelled."); break; }
            double? left = searchSeconds is { } budget ? budget - clock.Elapsed.TotalSeconds : null;
            if (left <= 0) break;
            var parameters = _tuner.Propose();
            if (parameters is null) { ch.Info("The tuner has nothing more to try."); break; }

            TrialResult result;
            ITransformer? model = null;
            ValidationScores? scores = null;
            if (checkpoint?.TryTake(parameters, out var recorded) == true)
            {
                result = recorded with { Id = id };
                halving?.Replay(result.EpochLosses);
                ch.Info($"Trial {id}: replayed from the checkpoint ({result.Status}, {_metric} {result.Metric:F4}).");
            }
            else if (_refitFraction is not null && left is { } searchLeft && ExpectedSeconds(trials, parameters) is { } expected && expected > searchLeft)
            {
                // It would be cancelled at the end of the search, its time lost; with a refit to come, that time is better spent there.
                ch.Info(string.Create(CultureInfo.InvariantCulture, $"Trial {id} not started: it would take about {expected:F0} s and the search has {searchLeft:F0} s left; the refits start now."));
                searchCutShort = true;
                break;
            }
            else
            {
                ch.Info($"Trial {id} starts: {parameters.ToJson()}");
                _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialStarted, id, parameters, null, best));
                using var trialCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                if (left is { } l) trialCancel.CancelAfter(TimeSpan.FromSeconds(l));
                (result, model, scores) = await RunTrial(id, parameters, evaluate, new TrialReporter(id, halving), trialCancel.Token).ConfigureAwait(false);
            }

            trials.Add(result);
            if (result.Status != TrialStatus.Cancelled)
                _tuner.Report(parameters, result.Status == TrialStatus.Succeeded ? TunerLoss(result) : double.PositiveInfinity, result.Duration);
            if (scores is not null) trialScores[id] = scores;
            bool improved = result.Status == TrialStatus.Succeeded && (best is null || IsBetter(result, best));
            if (improved) Adopt(result, model);
            Offer(result, model, scores);
            // A model that is neither the best nor an ensemble candidate is never returned: free its native tensors now
            // rather than when the GC gets to them.
            Release(model);
            // What the trial freed goes back to the OS, or the sweep's memory grows with every trial (see NativeHeap).
            Runtime.NativeHeap.Release();
            if (!result.FromCheckpoint && result.Status != TrialStatus.Cancelled) checkpoint?.Append(result);
            ch.Info(string.Format(CultureInfo.InvariantCulture, "Trial {0} {1}: {2} {3:F4} in {4:F1} s{5}; best so far: {6}",
                id, result.Status, _metric, result.Metric, result.Duration.TotalSeconds, result.Error is null ? "" : $" ({result.Error})",
                best is null ? "none" : $"trial {best.Id} ({best.Metric:F4})"));
            _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialEnded, id, parameters, result, best));
            if (result.Status == TrialStatus.Cancelled) break;
        }

        if (best is not null && evaluator is not null && _refitFraction is { } fraction && !cancellationToken.IsCancellationRequested)
        {
            var configurations = RefitConfigurations(trials, _refitCount);
            // Refits on all the data cannot be ranked on validation rows they trained on: they are kept aside and become the best model together.
            var onAllData = new List<(TrialResult Result, ITransformer Model, ValidationScores Scores)>();
            // Several refits on all the data are cross-fitted: refit k holds out the k-th fold of the validation rows.
            int[]? folds = _refitOnAllData ? CrossFitFolds(RowMaskDataView.CountRows(_validation!), configurations.Count) : null;
            // The reserve starts now. It is its planned share of the budget when the search ran out of trials early, and all
            // the rest of the budget when the search ended on time or skipped a trial that would not have finished.
            double reserveEnd = searchCutShort ? _seconds!.Value : Math.Min(_seconds!.Value, clock.Elapsed.TotalSeconds + fraction * _seconds.Value);
            for (int k = 0; k < configurations.Count && !cancellationToken.IsCancellationRequested; k++)
            {
                // An equal share of what is left of the reserve, so that a refit that runs over shortens the next ones.
                double left = _seconds.Value - clock.Elapsed.TotalSeconds;
                double refitSeconds = (reserveEnd - clock.Elapsed.TotalSeconds) / (configurations.Count - k);
                if (refitSeconds < 1) break;
                int id = trials.Count;
                var source = configurations[k];
                var parameters = source.Parameters;
                bool[]? heldOut = folds?.Select(f => f == k).ToArray();
                ch.Info($"Refit {id}: trial {source.Id}'s configuration for {refitSeconds:F0} s, " + (!_refitOnAllData ? "keeping its best validation epoch."
                    : heldOut is null ? "on the training and validation rows, keeping its last epoch."
                    : $"on the training rows and validation folds other than {k + 1} of {configurations.Count}, keeping its best epoch on fold {k + 1}."));
                _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialStarted, id, parameters, null, best));
                using var refitCancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                refitCancel.CancelAfter(TimeSpan.FromSeconds(left));
                // Most of the time trains; the rest covers per-epoch and final validation scoring.
                var trainTime = TimeSpan.FromSeconds(refitSeconds * 0.9);
                var (result, model, scores) = await RunTrial(id, parameters, (p, _, ct) => evaluator.Refit(p, trainTime, _refitOnAllData, heldOut, ct), new TrialReporter(id, null), refitCancel.Token).ConfigureAwait(false);
                result = result with { Refit = true, TrainedOnValidation = _refitOnAllData && heldOut is null };
                if (_refitOnAllData && result.Status == TrialStatus.Succeeded)
                {
                    // The trial's metric on the same rows: its fold when cross-fitted (all rows when replayed from a checkpoint, whose scores were not kept).
                    double trialMetric = heldOut is not null && trialScores.TryGetValue(source.Id, out var sourceScores) ? sourceScores.Where(heldOut).Compute(_metric) : source.Metric;
                    if (TrainedWorse(_metric, result.Metric, trialMetric))
                        result = result with
                        {
                            Status = TrialStatus.Failed,
                            Error = string.Create(CultureInfo.InvariantCulture, $"Dropped: {_metric} {result.Metric:F4} on {(heldOut is null ? "validation rows it trained on" : "its held-out fold of the validation rows")}, worse than trial {source.Id}'s {trialMetric:F4} {(heldOut is null ? "with them held out" : "on the same rows")}, so its longer training went wrong."),
                        };
                }
                trials.Add(result);
                if (_refitOnAllData)
                {
                    if (result.Status == TrialStatus.Succeeded) onAllData.Add((result, model!, scores!));
                    else Release(model);
                }
                else
                {
                    if (result.Status == TrialStatus.Succeeded && Rank(result).CompareTo(Rank(best)) <= 0) Adopt(result, model);
                    Offer(result, model, scores);
                    Release(model);
                }
                Runtime.NativeHeap.Release();
                ch.Info(string.Format(CultureInfo.InvariantCulture, "Refit {0} {1}: {2} {3:F4}{4} in {5:F1} s{6}; best: {7}",
                    id, result.Status, _metric, result.Metric, result.TrainedOnValidation ? " (in-sample)" : heldOut is null ? "" : " (held-out fold)", result.Duration.TotalSeconds,
                    result.Error is null ? "" : $" ({result.Error})", Describe(best)));
                _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialEnded, id, parameters, result, best));
            }
            if (onAllData.Count == 1) Adopt(onAllData[0].Result, onAllData[0].Model);
            else if (onAllData.Count > 1)
            {
                // Equal weights: no rows are held out from all of them to choose weights on. Cross-fitted, the ensemble's
                // metric is that of the out-of-fold scores (each validation row scored by the refit that held it out), as
                // a cross-validated trial's; otherwise it is in-sample.
                var outOfFold = folds is null ? null : ValidationScores.Concat([.. onAllData.Select(m => m.Scores)]);
                var (result, model, members) = BuildEnsemble(onAllData, [.. onAllData.Select(_ => 1.0)], TimeSpan.Zero, outOfFold);
                AddEnsemble(result with { TrainedOnValidation = folds is null }, model);
                ch.Info($"Ensemble {trials[^1].Id} of the refits on all the data ({members}) is the best model"
                    + (folds is null ? "." : string.Create(CultureInfo.InvariantCulture, $"; {_metric} of their out-of-fold scores {result.Metric:F4}.")));
            }
        }

        if (best is not null && pool.Count >= 2 && !cancellationToken.IsCancellationRequested)
            SelectEnsemble();
        // Candidates that did not join the best model are freed (the best model's own stages are kept).
        foreach (var entry in pool.ToList())
        {
            pool.Remove(entry);
            Release(entry.Model);
        }

        if (best is null)
            throw new InvalidOperationException($"No trial succeeded ({trials.Count} run): "
                + string.Join("; ", trials.Select(t => $"trial {t.Id} {t.Status}: {t.Error}")));
        if (best.FromCheckpoint && checkpoint is not null && File.Exists(Path.Combine(checkpoint.Folder, TrialCheckpoint.BestModelFileName)))
        {
            DisposeModel(bestModel);
            bestModel = _ml.Model.Load(Path.Combine(checkpoint.Folder, TrialCheckpoint.BestModelFileName), out _);
        }
        ch.Info($"Sweep done: {trials.Count} trial(s) in {clock.Elapsed.TotalSeconds:F1} s; best trial {best.Id} ({_metric} {best.Metric:F4}): {best.Parameters.ToJson()}");
        return new PeftSweepResult(_metric, best, bestModel, trials);

        // Makes a result the best: its model replaces (and frees, unless it is a candidate) the previous best and is saved
        // to the checkpoint folder.
        void Adopt(TrialResult result, ITransformer? model)
        {
            var previous = bestModel;
            best = result;
            bestModel = model;
            if (model is not null && checkpoint is not null && _train is not null)
                _ml.Model.Save(model, _train.Schema, Path.Combine(checkpoint.Folder, TrialCheckpoint.BestModelFileName));
            Release(previous);
        }

        // Keeps a succeeded model as an ensemble candidate while it is among the best; the one it pushes out is released.
        void Offer(TrialResult result, ITransformer? model, ValidationScores? scores)
        {
            if (_ensembleCandidates is not { } size || result.Status != TrialStatus.Succeeded || model is null || scores is null) return;
            pool.Add((result, model, scores));
            if (pool.Count <= size) return;
            var worst = pool.OrderByDescending(p => Rank(p.Result)).ThenByDescending(p => p.Result.Id).First();
            pool.Remove(worst);
            Release(worst.Model);
        }

        // Frees a model unless it is the best or a candidate.
        void Release(ITransformer? model)
        {
            if (model is null || ReferenceEquals(model, bestModel) || pool.Any(p => ReferenceEquals(p.Model, model))) return;
            DisposeModel(model);
        }

        void SelectEnsemble()
        {
            var selectionClock = Stopwatch.StartNew();
            var (counts, _) = EnsembleSelection.Select(_metric, pool.Select(p => p.Scores).ToList(), 4 * _ensembleCandidates!.Value);
            var chosen = Enumerable.Range(0, pool.Count).Where(i => counts[i] > 0).OrderByDescending(i => counts[i]).ThenBy(i => pool[i].Result.Id).ToList();
            if (chosen.Count < 2)
            {
                ch.Info("Ensemble selection kept a single model; the best trial stays the best model.");
                return;
            }
            var (result, model, members) = BuildEnsemble(chosen.Select(i => pool[i]).ToList(), chosen.Select(i => (double)counts[i]).ToList(), selectionClock.Elapsed);
            var previous = best!;
            if (Rank(result).CompareTo(Rank(previous)) >= 0)
            {
                // Not adopted: the stages stay candidates (released below); the ensemble object holds nothing else.
                ch.Info(string.Create(CultureInfo.InvariantCulture, $"Ensemble of {members}: {_metric} {result.Metric:F4}, no better than {Describe(previous)}; the best model stays."));
                return;
            }
            AddEnsemble(result, model);
            // The chosen stages now belong to the ensemble.
            foreach (int i in chosen.OrderByDescending(i => i)) pool.RemoveAt(i);
            ch.Info(string.Create(CultureInfo.InvariantCulture, $"Ensemble {result.Id} of {members}: {_metric} {result.Metric:F4}, better than {Describe(previous)}; it is the best model."));
        }

        // Records an ensemble as a leaderboard row, makes it the best model and reports it as a trial that started and ended.
        void AddEnsemble(TrialResult result, ITransformer model)
        {
            var previous = best;
            trials.Add(result);
            Adopt(result, model);
            _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialStarted, result.Id, result.Parameters, null, previous));
            _monitor?.Invoke(new SweepEvent(SweepEventKind.TrialEnded, result.Id, result.Parameters, result, best));
        }

        // The weighted average of the members' stages as a trial's model, its leaderboard row (next id, not yet added) and a
        // description of the members. Its metric is that of exactly what the ensemble computes, or of outOfFold when given.
        (TrialResult Result, ITransformer Model, string Members) BuildEnsemble(
            IReadOnlyList<(TrialResult Result, ITransformer Model, ValidationScores Scores)> members, IReadOnlyList<double> counts, TimeSpan duration,
            ValidationScores? outOfFold = null)
        {
            double total = counts.Sum();
            var weights = counts.Select(c => c / total).ToList();
            // Cross-validated members contribute their fold stages, each with its share of the member's weight. Counts, not
            // the weights: the ensemble normalises them to exactly counts / total, the weights reported here.
            var parts = members.SelectMany((m, i) => Stages(m.Model).Select(p => (p.Stage, Weight: counts[i] * p.Weight))).ToList();
            var ensemble = new PeftEnsembleTransformer(_host, parts.Select(p => p.Stage).ToList(), parts.Select(p => p.Weight).ToList());
            // Combine works in place, so on copies of the scores.
            var combined = outOfFold?.Scores ?? PeftEnsembleTransformer.Combine(members.Select(m => m.Scores.Scores.Select(r => (float[])r.Clone()).ToArray()).ToList(), weights);
            var reference = outOfFold ?? members[0].Scores;
            var ensembleMembers = members.Select((m, i) => new EnsembleMember(m.Result.Id, weights[i])).ToList();
            var result = new TrialResult
            {
                Id = trials.Count, Parameters = members[0].Result.Parameters, Status = TrialStatus.Succeeded,
                Metric = reference.Compute(_metric, combined), ValidationLoss = reference.TieBreakLoss(combined),
                TrainableParameters = ensemble.TrainableParameterCount, Duration = duration, PeakWorkingSetBytes = PeakWorkingSet(),
                Ensemble = ensembleMembers,
            };
            // The trials' key mapping (fitted on the same training set in every trial) goes in front, as in a trial's model.
            ITransformer model = members[0].Model is TransformerChain<ITransformer> chain
                ? new TransformerChain<ITransformer>([.. chain.Where(t => t is not PeftTextTransformer), ensemble])
                : ensemble;
            string description = string.Join(", ", ensembleMembers.Select(e => string.Create(CultureInfo.InvariantCulture, $"{(trials[e.TrialId].Refit ? "refit" : "trial")} {e.TrialId} × {e.Weight:F2}")));
            return (result, model, description);
        }

        string Describe(TrialResult t) => string.Create(CultureInfo.InvariantCulture,
            $"{(t.Ensemble.Count > 0 ? "ensemble" : t.Refit ? "refit" : "trial")} {t.Id} ({t.Metric:F4})");
    }

    /// <summary>
    /// A refit on all the data trained longer, on more rows, than the trial it repeats, so on the same validation rows it
    /// should do at least as well: on its held-out fold when cross-fitted, and on rows it trained on otherwise. Doing worse
    /// means its longer training went wrong (a learning rate that suits one epoch and not ten, say).
    /// </summary>
    internal static bool TrainedWorse(PeftMetric metric, double refitMetric, double trialMetric) =>
        !(metric.ToLoss(refitMetric) <= metric.ToLoss(trialMetric));

    /// <summary>
    /// How long a search trial of <paramref name="next"/> should take: the median seconds per epoch of the succeeded
    /// search trials so far times its epochs (a point without <c>Epochs</c> counts as one); null before any succeeded.
    /// </summary>
    internal static double? ExpectedSeconds(IReadOnlyList<TrialResult> trials, TrialParameters next)
    {
        var perEpoch = trials.Where(t => t.Status == TrialStatus.Succeeded && !t.Refit && t.Ensemble.Count == 0)
            .Select(t => t.Duration.TotalSeconds / Epochs(t.Parameters)).Order().ToList();
        if (perEpoch.Count == 0) return null;
        double median = perEpoch.Count % 2 == 1 ? perEpoch[perEpoch.Count / 2] : (perEpoch[perEpoch.Count / 2 - 1] + perEpoch[perEpoch.Count / 2]) / 2;
        return median * Epochs(next);

        static double Epochs(TrialParameters p) =>
            p.Values.TryGetValue(nameof(PeftTextOptions.Epochs), out var e) ? Math.Max(1, Convert.ToDouble(e, CultureInfo.InvariantCulture)) : 1;
    }

    /// <summary>
    /// The cross-fitting folds of <paramref name="rows"/> validation rows for <paramref name="refits"/> refits on all the
    /// data (row → fold, from a fixed seed, fold sizes differing by at most one); null for a single refit or fewer than two
    /// rows a fold, when the refits train on all the validation rows instead.
    /// </summary>
    internal static int[]? CrossFitFolds(int rows, int refits)
    {
        if (refits < 2 || rows < 2 * refits) return null;
        var order = Enumerable.Range(0, rows).ToArray();
        new Random(0).Shuffle(order);
        var folds = new int[rows];
        for (int i = 0; i < rows; i++) folds[order[i]] = i % refits;
        return folds;
    }

    // The best succeeded trials with distinct configurations (epochs aside: a refit sets its own), best first, repeated
    // in order when there are fewer than count; with keepDefault and count >= 2 the default configuration, when it ran,
    // takes the last place unless it is already chosen.
    internal IReadOnlyList<TrialResult> RefitConfigurations(IReadOnlyList<TrialResult> trials, int count)
    {
        var distinct = trials.Where(t => t.Status == TrialStatus.Succeeded && !t.Refit && t.Ensemble.Count == 0)
            .OrderBy(Rank).ThenBy(t => t.Duration).ThenBy(t => t.Id)
            .DistinctBy(t => WithoutEpochs(t.Parameters))
            .ToList();
        if (distinct.Count == 0) return [];
        var chosen = Enumerable.Range(0, count).Select(i => distinct[i % distinct.Count]).ToList();
        if (_refitKeepsDefault && count >= 2)
        {
            string start = WithoutEpochs(PeftTuner.Defaults(_space, _space.Methods[0]));
            if (distinct.FirstOrDefault(t => WithoutEpochs(t.Parameters) == start) is { } defaults && !chosen.Contains(defaults))
                chosen[count - 1] = defaults;
        }
        return chosen;

        // A refit sets its own epochs, so trials that differ only in epochs are one configuration.
        static string WithoutEpochs(TrialParameters p) =>
            new TrialParameters(p.Method, p.Values.Where(v => v.Key != nameof(PeftTextOptions.Epochs)).ToDictionary()).ToJson();
    }

    private IReadOnlyList<(IDataView Train, IDataView Validation)> Splits() => _crossValidation is { } cv
        ? _ml.Data.CrossValidationSplit(_train!, cv.Folds, cv.SamplingKeyColumn, seed: 0).Select(s => (s.TrainSet, s.TestSet)).ToList()
        : [(_train!, _validation!)];

    // The stages of a trial's model with their weights: one stage, or a cross-validated trial's fold stages.
    private static IEnumerable<(PeftTextTransformer Stage, double Weight)> Stages(ITransformer model)
    {
        var last = (model is IEnumerable<ITransformer> chain ? chain : [model]).Last();
        return last switch
        {
            PeftTextTransformer stage => [(stage, 1.0)],
            PeftEnsembleTransformer bag => bag.Members.Zip(bag.Weights),
            _ => throw new InvalidOperationException($"A trial's model ends with {last.GetType().Name}, not a PEFT stage."),
        };
    }

    private static void DisposeModel(ITransformer? model)
    {
        if (model is IDisposable disposable) disposable.Dispose();
        else if (model is IEnumerable<ITransformer> chain)
            foreach (var t in chain) DisposeModel(t);
    }

    private bool IsBetter(TrialResult a, TrialResult b)
    {
        int order = Rank(a).CompareTo(Rank(b));
        return order < 0 || (order == 0 && a.Duration < b.Duration);
    }

    private (double Metric, double Loss) Rank(TrialResult t) => _metric.Rank(t);

    // What the tuner minimises: the metric, nudged by a millionth of the validation loss so that equal metrics (accuracy at
    // the majority class, say) still order the trials by how much they learned.
    private double TunerLoss(TrialResult t) =>
        _metric.ToLoss(t.Metric) + (double.IsFinite(t.ValidationLoss) ? 1e-6 * t.ValidationLoss : 0);

    private static async Task<(TrialResult, ITransformer?, ValidationScores?)> RunTrial(int id, TrialParameters parameters,
        Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> evaluate, TrialReporter reporter, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var outcome = await Task.Run(() => evaluate(parameters, reporter, cancel), CancellationToken.None).ConfigureAwait(false);
            clock.Stop();
            var result = new TrialResult
            {
                Id = id, Parameters = parameters, Duration = clock.Elapsed, TrainableParameters = outcome.TrainableParameters,
                PeakWorkingSetBytes = PeakWorkingSet(), Metric = outcome.Metric, EpochLosses = [.. reporter.EpochLosses],
                ValidationLoss = outcome.Validation?.TieBreakLoss() ?? double.NaN,
                Status = double.IsFinite(outcome.Metric) ? TrialStatus.Succeeded : TrialStatus.Failed,
                Error = double.IsFinite(outcome.Metric) ? null : $"The metric is {outcome.Metric}.",
            };
            bool ok = result.Status == TrialStatus.Succeeded;
            return (result, ok ? outcome.Model : null, ok ? outcome.Validation : null);
        }
        catch (Exception e) when (reporter.PrunedAtEpoch is not null)
        {
            var pruned = e as TrialPrunedException ?? FindPruned(e);
            return (new TrialResult { Id = id, Parameters = parameters, Duration = clock.Elapsed, PeakWorkingSetBytes = PeakWorkingSet(), Status = TrialStatus.Pruned, Error = pruned?.Message ?? e.Message, EpochLosses = [.. reporter.EpochLosses] }, null, null);
        }
        catch (Exception e) when (cancel.IsCancellationRequested)
        {
            return (new TrialResult { Id = id, Parameters = parameters, Duration = clock.Elapsed, PeakWorkingSetBytes = PeakWorkingSet(), Status = TrialStatus.Cancelled, Error = e.Message }, null, null);
        }
        catch (Exception e)
        {
            return (new TrialResult { Id = id, Parameters = parameters, Duration = clock.Elapsed, PeakWorkingSetBytes = PeakWorkingSet(), Status = TrialStatus.Failed, Error = $"{e.GetType().Name}: {e.Message}", EpochLosses = [.. reporter.EpochLosses] }, null, null);
        }
    }

    private static TrialPrunedException? FindPruned(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is TrialPrunedException p) return p;
        return null;
    }

    private static long PeakWorkingSet()
    {
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64;
    }
}
