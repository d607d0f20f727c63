using Microsoft.ML.Peft.MLNet;

namespace Microsoft.ML.Peft.Sweep;

/// <summary>
/// A trained model of a sweep with its row and its validation scores (what ensemble selection averages).
/// </summary>
internal sealed record TrainedModel(TrialResult Result, ITransformer Model, ValidationScores Scores);

/// <summary>
/// The trained models a sweep holds: the best so far (also saved as the checkpoint folder's <c>best-model.zip</c>) and,
/// with <see cref="PeftSweep.SetEnsemble"/>, the ensemble candidates. A model that is neither is never returned, so it
/// is freed as soon as it drops out: its native tensors would otherwise wait for the GC while the next trial trains.
/// </summary>
internal sealed class ModelPool(MLContext ml, SweepSettings settings, TrialCheckpoint? checkpoint)
{
    private readonly List<TrainedModel> _candidates = [];

    public TrialResult? Best { get; private set; }

    public ITransformer? BestModel { get; private set; }

    /// <summary>The ensemble candidates, in the order they were offered.</summary>
    public IReadOnlyList<TrainedModel> Candidates => _candidates;

    /// <summary>
    /// Makes a result the best: its model replaces (and frees, unless it is a candidate) the previous best and is saved
    /// to the checkpoint folder.
    /// </summary>
    public void Adopt(TrialResult result, ITransformer? model)
    {
        var previous = BestModel;
        Best = result;
        BestModel = model;
        if (model is not null && checkpoint is not null && settings.Train is not null)
            ml.Model.Save(model, settings.Train.Schema, BestModelPath(checkpoint));
        Release(previous);
    }

    /// <summary>
    /// Keeps a succeeded model as an ensemble candidate while it is among the best; the one it pushes out is released.
    /// </summary>
    public void Offer(TrialResult result, ITransformer? model, ValidationScores? scores)
    {
        if (settings.EnsembleCandidates is not { } size || result.Status != TrialStatus.Succeeded
            || model is null || scores is null) return;
        _candidates.Add(new TrainedModel(result, model, scores));
        if (_candidates.Count <= size) return;
        var worst = _candidates.OrderByDescending(p => settings.Rank(p.Result))
            .ThenByDescending(p => p.Result.Id).First();
        _candidates.Remove(worst);
        Release(worst.Model);
    }

    /// <summary>Frees a model unless it is the best or a candidate.</summary>
    public void Release(ITransformer? model)
    {
        if (model is null || ReferenceEquals(model, BestModel)
            || _candidates.Any(p => ReferenceEquals(p.Model, model))) return;
        DisposeModel(model);
    }

    /// <summary>
    /// Forgets the candidates at these indices without freeing them: an ensemble now owns their stages.
    /// </summary>
    public void Withdraw(IEnumerable<int> indices)
    {
        foreach (int i in indices.OrderByDescending(i => i)) _candidates.RemoveAt(i);
    }

    /// <summary>Frees the candidates that did not join the best model (the best model's own stages are kept).</summary>
    public void ReleaseCandidates()
    {
        foreach (var entry in _candidates.ToList())
        {
            _candidates.Remove(entry);
            Release(entry.Model);
        }
    }

    /// <summary>
    /// A best trial replayed from the checkpoint has no model in memory: it is loaded from the folder's
    /// <c>best-model.zip</c>, saved when that trial first ran.
    /// </summary>
    public void LoadReplayedBest()
    {
        if (Best is not { FromCheckpoint: true } || checkpoint is null || !File.Exists(BestModelPath(checkpoint)))
            return;
        DisposeModel(BestModel);
        BestModel = ml.Model.Load(BestModelPath(checkpoint), out _);
    }

    /// <summary>
    /// The stages of a trial's model with their weights: one stage, or a cross-validated trial's fold stages.
    /// </summary>
    public static IEnumerable<(PeftTextTransformer Stage, double Weight)> Stages(ITransformer model)
    {
        var last = (model is IEnumerable<ITransformer> chain ? chain : [model]).Last();
        return last switch
        {
            PeftTextTransformer stage => [(stage, 1.0)],
            PeftEnsembleTransformer bag => bag.Members.Zip(bag.Weights),
            _ => throw new InvalidOperationException(
                $"A trial's model ends with {last.GetType().Name}, not a PEFT stage."),
        };
    }

    private static string BestModelPath(TrialCheckpoint checkpoint) =>
        Path.Combine(checkpoint.Folder, TrialCheckpoint.BestModelFileName);

    internal static void DisposeModel(ITransformer? model)
    {
        if (model is IDisposable disposable) disposable.Dispose();
        else if (model is IEnumerable<ITransformer> chain)
            foreach (var t in chain) DisposeModel(t);
    }
}
