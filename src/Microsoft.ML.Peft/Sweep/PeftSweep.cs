using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// An AutoML-style sweep over PEFT methods and their hyper-parameters (create it with
/// <c>mlContext.Peft().CreateSweep()</c>). Each trial trains a stage on the training set and scores the validation set;
/// the tuner proposes the next point from the results so far. The budget is wall-clock seconds and/or a trial count;
/// the running trial is cancelled cooperatively when the time runs out. Failed trials are recorded and the sweep goes
/// on. Progress goes to <c>MLContext.Log</c> and to an optional monitor.
/// </summary>
public sealed class PeftSweep
{
    private readonly MLContext _ml;
    private readonly IHost _host;
    private SweepSettings _settings = new();

    internal PeftSweep(MLContext ml)
    {
        _ml = ml;
        _host = ((IHostEnvironment)ml).Register(nameof(PeftSweep));
    }

    /// <summary>Training and validation data (the validation set is scored once per trial).</summary>
    public PeftSweep SetDataset(IDataView train, IDataView validation)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        _settings = _settings with { Train = train, Validation = validation, CrossValidation = null };
        return this;
    }

    /// <summary>
    /// Cross-validation, as ML.NET AutoML's <c>SetDataset(data, fold)</c>: the rows are split once into
    /// <paramref name="folds"/> folds (<c>mlContext.Data.CrossValidationSplit</c> with a fixed seed, so a resumed sweep
    /// sees the same folds); every trial trains one stage per fold and is scored on the out-of-fold predictions of all
    /// rows. The trial's model averages its fold stages (a <see cref="PeftEnsembleTransformer"/>, bagging), so it costs
    /// <paramref name="folds"/> times the training, memory and scoring of one stage. Successive halving judges a trial
    /// on its first fold; <see cref="SetRefit"/> needs a validation set and is refused.
    /// </summary>
    /// <param name="data">All labelled rows.</param>
    /// <param name="folds">Number of folds, 2 to 20. Default 5.</param>
    /// <param name="samplingKeyColumnName">Rows with equal values in this column stay in one fold (e.g. a document id);
    /// null for a random split.</param>
    public PeftSweep SetDataset(IDataView data, int folds = 5, string? samplingKeyColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (folds is < 2 or > 20)
            throw new ArgumentOutOfRangeException(nameof(folds), $"must be 2 to 20, got {folds}.");
        if (samplingKeyColumnName is not null && data.Schema.GetColumnOrNull(samplingKeyColumnName) is null)
            throw new ArgumentException($"Sampling key column '{samplingKeyColumnName}' is not in the data.",
                nameof(samplingKeyColumnName));
        _settings = _settings with
        {
            Train = data, Validation = null, CrossValidation = (folds, samplingKeyColumnName),
        };
        return this;
    }

    /// <summary>
    /// The label column. Classification: raw values (then <c>MapValueToKey</c> goes in front of the stage in every
    /// trial and in the best model) or already a key (the stage alone). Regression: a float column.
    /// </summary>
    public PeftSweep SetLabel(string labelColumnName)
    {
        ArgumentNullException.ThrowIfNull(labelColumnName);
        _settings = _settings with { Label = labelColumnName };
        return this;
    }

    /// <summary>The text column, and an optional second one for sentence pairs.</summary>
    public PeftSweep SetText(string sentence1ColumnName, string? sentence2ColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(sentence1ColumnName);
        _settings = _settings with { Text = sentence1ColumnName, Text2 = sentence2ColumnName };
        return this;
    }

    /// <summary>The metric to optimise; regression metrics make every trial a regression stage. Default
    /// <see cref="PeftMetric.Accuracy"/>.</summary>
    public PeftSweep SetMetric(PeftMetric metric)
    {
        _settings = _settings with { Metric = metric };
        return this;
    }

    /// <summary>The search space. Default <see cref="PeftSearchSpace.CreateDefault"/>.</summary>
    public PeftSweep SetSearchSpace(PeftSearchSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        _settings = _settings with { Space = space };
        return this;
    }

    /// <summary>The tuner. Default <see cref="PeftTuner.CostFrugal"/> with seed 0.</summary>
    public PeftSweep SetTuner(PeftTuner tuner)
    {
        ArgumentNullException.ThrowIfNull(tuner);
        _settings = _settings with { Tuner = tuner };
        return this;
    }

    /// <summary>Wall-clock budget; the trial running when it ends is cancelled. At least one of this and
    /// <see cref="SetMaxTrials"/> is needed.</summary>
    public PeftSweep SetTrainingTimeInSeconds(double seconds)
    {
        if (!(seconds > 0)) throw new ArgumentOutOfRangeException(nameof(seconds), "must be positive.");
        _settings = _settings with { Seconds = seconds };
        return this;
    }

    /// <summary>Most trials to run (replayed checkpoint trials count).</summary>
    public PeftSweep SetMaxTrials(int maxTrials)
    {
        if (maxTrials < 1) throw new ArgumentOutOfRangeException(nameof(maxTrials), "must be at least 1.");
        _settings = _settings with { MaxTrials = maxTrials };
        return this;
    }

    /// <summary>
    /// Folder for <c>trials.jsonl</c> (one line per finished trial) and <c>best-model.zip</c>. A sweep restarted with
    /// the same folder, space and tuner seed replays the tuner and skips the trials that already finished. With
    /// <see cref="SetStorage"/> the study's database is the checkpoint instead, and the folder only holds its default
    /// SQLite file and relative SQLite paths.
    /// </summary>
    public PeftSweep SetCheckpointFolder(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        _settings = _settings with { CheckpointFolder = folder };
        return this;
    }

    /// <summary>
    /// Keeps the sweep as a named study in a database, so that <see cref="RunAsync"/> in several processes or machines
    /// works on one study: each worker claims the tuner's next point (the tuner rebuilt from every trial in the
    /// database), trains it and writes the result; the budget (<see cref="SetMaxTrials"/>,
    /// <see cref="SetTrainingTimeInSeconds"/>, counted from the study's creation) is the study's. A worker that dies
    /// leaves its trial running without heartbeats; after <paramref name="heartbeatTimeout"/> another worker marks it
    /// failed and, with <paramref name="retryLostTrials"/>, queues it again. The best model is stored in the database
    /// (<see cref="LoadBest"/>), and the leaderboard can be read while the study runs (<see cref="LoadStudy"/>).
    /// Restarting a worker resumes the study. Without this call the sweep is one process, as before. Search only:
    /// <see cref="SetRefit"/> and <see cref="SetEnsemble"/> are refused with it.
    /// </summary>
    /// <param name="connectionString">SQLite (workers on one machine): <c>sqlite:path</c>, a path ending in
    /// <c>.db</c>, or <c>Data Source=path</c>; a relative path is taken in the checkpoint folder when one is set, and
    /// null means <c>study.db</c> there. PostgreSQL (any machines): <c>postgresql://user:password@host:5432/db</c> or
    /// an Npgsql string such as <c>Host=h;Database=db;Username=u;Password=p</c>.</param>
    /// <param name="studyName">The study; workers that give the same name (and the same metric and tuner) cooperate,
    /// and one database holds any number of studies.</param>
    /// <param name="heartbeatTimeout">How long a running trial may go without its worker's heartbeat (sent four times
    /// per timeout) before it is declared lost. Default 2 minutes; the workers' clocks must agree to well within it.
    /// </param>
    /// <param name="retryLostTrials">Run a lost trial again (as a new trial number with the same point). Default
    /// false: it stays failed, as Optuna's.</param>
    public PeftSweep SetStorage(string? connectionString, string studyName = "default",
        TimeSpan? heartbeatTimeout = null, bool retryLostTrials = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(studyName);
        var timeout = heartbeatTimeout ?? TimeSpan.FromMinutes(2);
        if (timeout < TimeSpan.FromSeconds(1))
            throw new ArgumentOutOfRangeException(nameof(heartbeatTimeout), "must be at least 1 second.");
        // Parsed now so that a bad string fails here, naming this option; resolved again at run time, when the
        // checkpoint folder is known.
        if (connectionString is not null)
            Storage.StorageLocation.Parse(connectionString, null, nameof(connectionString));
        _settings = _settings with
        {
            Storage = new StudySettings(connectionString, studyName, timeout, retryLostTrials),
        };
        return this;
    }

    /// <summary>
    /// The best model of a study in <paramref name="connectionString"/> (see <see cref="SetStorage"/>), from any
    /// machine, while or after its workers run.
    /// </summary>
    /// <exception cref="ArgumentException">The database has no study of that name.</exception>
    /// <exception cref="InvalidOperationException">No trial of the study has stored a model yet.</exception>
    public static ITransformer LoadBest(string connectionString, string studyName, MLContext? mlContext = null)
    {
        var store = OpenStudy(connectionString, studyName);
        var stored = store.LoadBestModel() ?? throw new InvalidOperationException(
            $"No trial of study '{studyName}' has stored a model yet.");
        return (mlContext ?? new MLContext()).Model.Load(new MemoryStream(stored.Model, writable: false), out _);
    }

    /// <summary>
    /// A study's leaderboard as it stands (its finished trials, best first through
    /// <see cref="PeftSweepResult.Leaderboard"/>, <see cref="PeftSweepResult.ToDataView"/> and
    /// <see cref="PeftSweepResult.WriteCsv"/>), read from the database while or after its workers run. The result's
    /// <see cref="PeftSweepResult.BestModel"/> is null: see <see cref="LoadBest"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The database has no study of that name.</exception>
    /// <exception cref="InvalidOperationException">No trial of the study has succeeded yet.</exception>
    public static PeftSweepResult LoadStudy(string connectionString, string studyName)
    {
        var store = OpenStudy(connectionString, studyName);
        return Storage.StoredSearch.Result(new MLContext(), store, store.LoadMetric(), withModel: false);
    }

    private static Storage.StudyStore OpenStudy(string connectionString, string studyName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentException.ThrowIfNullOrWhiteSpace(studyName);
        var store = new Storage.StudyStore(
            Storage.StorageLocation.Parse(connectionString, null, nameof(connectionString)), studyName);
        if (!store.Exists())
            throw new ArgumentException($"There is no study '{studyName}' in {store.Location.Describe()}.",
                nameof(studyName));
        return store;
    }

    /// <summary>The pretrained encoder of every trial. Default null: the embedded MiniLM.</summary>
    public PeftSweep SetBaseModel(BaseModel baseModel)
    {
        _settings = _settings with { BaseModel = baseModel };
        return this;
    }

    /// <summary>Adjusts every trial's stage options before the trial's parameters are applied (e.g. precision, token
    /// budget).</summary>
    public PeftSweep ConfigureOptions(Action<PeftTextOptions> configure)
    {
        _settings = _settings with { Configure = configure };
        return this;
    }

    /// <summary>A callback for trial start and end (with the metric and the running best).</summary>
    public PeftSweep SetMonitor(Action<SweepEvent> monitor)
    {
        _settings = _settings with { Monitor = monitor };
        return this;
    }

    /// <summary>
    /// Replaces training with a custom evaluation of a point (for tests, or to train something else); it must honour
    /// the token. <c>SetDataset</c> is then optional.
    /// </summary>
    internal PeftSweep SetTrialEvaluation(Func<TrialParameters, CancellationToken, TrialOutcome> evaluate)
    {
        ArgumentNullException.ThrowIfNull(evaluate);
        _settings = _settings with { Evaluate = (p, _, ct) => evaluate(p, ct) };
        return this;
    }

    /// <summary>
    /// As <see cref="SetTrialEvaluation(Func{TrialParameters, CancellationToken, TrialOutcome})"/>, with a reporter for
    /// per-epoch validation losses so that successive halving can stop the trial.
    /// </summary>
    internal PeftSweep SetTrialEvaluation(
        Func<TrialParameters, TrialReporter, CancellationToken, TrialOutcome> evaluate)
    {
        ArgumentNullException.ThrowIfNull(evaluate);
        _settings = _settings with { Evaluate = evaluate };
        return this;
    }

    /// <summary>
    /// Stops bad trials early with asynchronous successive halving over epochs: at epochs
    /// <paramref name="minEpochs"/>·η^k a trial goes on only when its validation result is in the top 1/η of those
    /// seen at that epoch. With the default trial evaluation this sets the stage's
    /// <see cref="PeftTextOptions.ValidationSet"/> (each epoch is scored: accuracy for classification, RMSE for
    /// regression, and the best epoch's weights are kept). Pruned trials are recorded as
    /// <see cref="TrialStatus.Pruned"/> and count as failures for the tuner.
    /// </summary>
    /// <param name="reductionFactor">η, at least 2.</param>
    /// <param name="minEpochs">The first rung, at least 1.</param>
    public PeftSweep SetEarlyStopping(int reductionFactor = 3, int minEpochs = 1)
    {
        if (reductionFactor < 2) throw new ArgumentOutOfRangeException(nameof(reductionFactor), "must be at least 2.");
        if (minEpochs < 1) throw new ArgumentOutOfRangeException(nameof(minEpochs), "must be at least 1.");
        _settings = _settings with { Halving = (reductionFactor, minEpochs) };
        return this;
    }

    /// <summary>
    /// Reserves <paramref name="budgetFraction"/> of the time budget to retrain the best configurations once the search
    /// ends (as FLAML's retraining of the best config): epochs unbounded, <see cref="PeftTextOptions.MaxTrainingTime"/>
    /// = the refit's share of the reserve so the learning rate decays by the clock, every epoch scored on the
    /// validation set and the best epoch kept. Search trials are short; this gives the winners the long training a
    /// fixed configuration would get. With <paramref name="configurations"/> &gt; 1 the reserve is split equally among
    /// the best distinct configurations (trials that differ only in epochs count as one, since a refit sets its own),
    /// each trained from a new seed; when the search found fewer, the best are trained again. Together with
    /// <see cref="SetEnsemble"/> this gives the ensemble several well-trained, differently initialised members, which
    /// average better than one model trained for the whole reserve. A refit becomes the best model when its validation
    /// metric is at least the best so far; it is a leaderboard row with <see cref="TrialResult.Refit"/> set and is not
    /// checkpointed (a resumed sweep refits again). The search does not start a trial it expects to outlast its share
    /// of the budget (the median seconds per epoch of its trials so far times the trial's epochs), since the trial
    /// would be cancelled and its time lost: the refits start then and get that time. Needs
    /// <see cref="SetTrainingTimeInSeconds"/> and the default trial evaluation.
    /// <para>With <paramref name="onAllData"/> (as FLAML's <c>retrain_full</c> and AutoGluon's <c>refit_full</c>) the
    /// refits also learn from the validation rows, and become the best model without being compared with the trials (a
    /// trial's metric is the best of many short runs on those rows, so it is biased upwards and would win unfairly).
    /// Several refits are cross-fitted: the validation rows are split into as many random folds (a fixed seed), and
    /// refit k trains on the training rows and every fold but the k-th, keeps its best epoch on fold k and reports its
    /// metric there. The best model is their equal-weight average, so every validation row trains all but one of its
    /// members; its metric is that of the out-of-fold scores (each row scored by the refit that held it out), as a
    /// cross-validated trial's. A refit that does worse on its fold than its trial did on the same rows has trained
    /// badly (a learning rate that suits one epoch and not ten, say) and is dropped, recorded as failed. A single refit
    /// trains on all the validation rows and keeps its last epoch; its metric is in-sample (flagged by
    /// <see cref="TrialResult.TrainedOnValidation"/>), and the same check compares it with its trial on rows it trained
    /// on, which catches only a collapse. When all refits are dropped the best trial stays the best model. This cannot
    /// be combined with <see cref="SetEnsemble"/>, whose weights are chosen on the validation rows.</para>
    /// <para>With several configurations and <paramref name="keepDefault"/>, the search space's default configuration
    /// (its first method with every declared default, where the cost-frugal tuner starts) is one of them whenever the
    /// search ran it: it takes the last place when it is not among the best. Short trials tell the best configurations
    /// apart by less than the noise of a validation set, and they favour high learning rates that learn fast in one
    /// epoch and degrade over the refit's many (short-horizon bias); the default, chosen across tasks, is the
    /// hedge.</para>
    /// </summary>
    /// <param name="budgetFraction">Share of the time budget kept for the refits, in (0, 1). Default 0.25.</param>
    /// <param name="configurations">How many of the best configurations to retrain, 1 to 16. Default 1.</param>
    /// <param name="onAllData">Train the refits on the training and validation rows together. Default false.</param>
    /// <param name="keepDefault">With several configurations, refit the default configuration too when the search ran
    /// it. Default true.</param>
    public PeftSweep SetRefit(double budgetFraction = 0.25, int configurations = 1, bool onAllData = false,
        bool keepDefault = true)
    {
        if (!(budgetFraction > 0 && budgetFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(budgetFraction), "must be in (0, 1).");
        if (configurations is < 1 or > 16)
            throw new ArgumentOutOfRangeException(nameof(configurations), $"must be 1 to 16, got {configurations}.");
        _settings = _settings with
        {
            RefitFraction = budgetFraction, RefitCount = configurations, RefitOnAllData = onAllData,
            RefitKeepsDefault = keepDefault,
        };
        return this;
    }

    /// <summary>
    /// After the search (and the refit), combines the best models into a weighted ensemble when that validates better
    /// than the best single model: greedy ensemble selection with replacement (Caruana et al. 2004, as the weighted
    /// ensembles of AutoGluon and auto-sklearn). The <paramref name="candidates"/> best succeeded models of this run,
    /// the refit included, are kept in memory as the sweep goes; selection adds one of them at a time (4 × candidates
    /// additions at most) to an average of class probabilities, or of regression scores, on the validation set, and
    /// keeps the best average seen. The result is a <see cref="MLNet.PeftEnsembleTransformer"/> (behind the label's key
    /// mapping, as a trial's model), a leaderboard row with <see cref="TrialResult.Ensemble"/> set, and the best model;
    /// it scores as many times slower as it has members. Trials replayed from a checkpoint are not candidates (their
    /// models were not kept). Needs the default trial evaluation.
    /// </summary>
    /// <param name="candidates">How many of the best models to keep and select from, 2 to 32. Default 5.</param>
    public PeftSweep SetEnsemble(int candidates = 5)
    {
        if (candidates is < 2 or > 32)
            throw new ArgumentOutOfRangeException(nameof(candidates), $"must be 2 to 32, got {candidates}.");
        _settings = _settings with { EnsembleCandidates = candidates };
        return this;
    }

    /// <summary>
    /// Runs trials until the budget, the tuner or <paramref name="cancellationToken"/> ends the sweep, and returns the
    /// best so far. Throws <see cref="InvalidOperationException"/> when no trial succeeded.
    /// </summary>
    public async Task<PeftSweepResult> RunAsync(CancellationToken cancellationToken = default)
    {
        using var run = SweepRun.Start(_ml, _host, _settings);
        return await run.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    // The tests reach these through the sweep, whose settings RefitConfigurations needs; the logic is in the phases.
    internal static bool TrainedWorse(PeftMetric metric, double refitMetric, double trialMetric) =>
        RefitPhase.TrainedWorse(metric, refitMetric, trialMetric);

    internal static double? ExpectedSeconds(IReadOnlyList<TrialResult> trials, TrialParameters next) =>
        SearchPhase.ExpectedSeconds(trials, next);

    internal static int[]? CrossFitFolds(int rows, int refits) => RefitPhase.CrossFitFolds(rows, refits);

    internal IReadOnlyList<TrialResult> RefitConfigurations(IReadOnlyList<TrialResult> trials, int count) =>
        RefitPhase.Configurations(_settings, trials, count);
}
