using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Methods;
using Microsoft.ML.Peft.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>
/// The training loop shared by every PEFT method: AdamW with linear warm-up and decay, length-bucketed batches,
/// gradient clipping, optional early stopping that restores the best epoch's trainable weights, cooperative
/// cancellation.
/// </summary>
internal sealed class PeftTrainer : ITrainingProbe
{
    private readonly PeftModel _model;
    // The method attached to the model: the model owns it, the trainer only calls its training hooks.
    private PeftMethodConfig Method => _model.Method;
    private readonly TrainingSettings _s;
    private readonly int _padId;
    private readonly Device _device;
    private TorchScorer _validationScorer;
    // Most rows and padded tokens in one forward and backward pass (the memory budget's physical batch); 0: no limit.
    private int _rowsPerPass, _tokensPerPass;

    /// <summary>Trains <paramref name="model"/> with the method attached to it.</summary>
    public PeftTrainer(PeftModel model, TrainingSettings settings, int padId, Device device)
    {
        _model = model; _s = settings; _padId = padId; _device = device;
        // Validation scores through the same engine as the finished stage (threads: the training scope's).
        _validationScorer = new TorchScorer(model, settings.BatchSize, settings.TokenBudget, padId, device);
    }

    public string MetricName => _s.Task == PeftTask.Classification ? "accuracy" : "rmse";

    /// <summary>
    /// Trains on <paramref name="train"/>, scoring <paramref name="validation"/> after each epoch; progress reports go
    /// to <paramref name="progress"/>, and the memory budget's decision to <paramref name="log"/> before the first
    /// step.
    /// </summary>
    public TrainingReport Train(IReadOnlyList<Example> train, IReadOnlyList<Example>? validation,
        Action<TrainingProgress>? progress, Action checkAlive, CancellationToken cancel, Action<string>? log = null)
    {
        var rng = new Random(_s.Seed);
        torch.manual_seed(_s.Seed);
        var lengths = train.Select(e => e.Length).ToArray();
        int stepsPerEpoch = BatchPlanner.ForTraining(lengths, _s.BatchSize, _s.TokenBudget, new Random(_s.Seed)).Count;
        int totalSteps = stepsPerEpoch * _s.Epochs;
        int warmup = (int)Math.Ceiling(totalSteps * _s.WarmupRatio);

        var trainable = _model.TrainableParameters().ToList();
        // bf16: the model computes in bf16, the optimizer updates float32 master copies, which are copied back after
        // each step. The frozen weights are kept in float32 too, so training leaves the base exactly as it was.
        bool mixed = _s.ComputeType != ScalarType.Float32;
        var frozen = mixed
            ? Snapshot(_model.named_parameters()
                .Where(p => !p.parameter.requires_grad)
                .Select(p => (p.name, p.parameter)))
            : null;
        using var masters = new MasterWeights(trainable.Select(p => p.Parameter).ToList(), mixed);
        if (mixed)
        {
            _model.CastTo(_s.ComputeType); // replaces the parameter objects: look them up again
            trainable = _model.TrainableParameters().ToList();
            masters.Bind(trainable.Select(p => p.Parameter).ToList());
        }
        var optimized = trainable.Select((p, i) => (p.Name, Parameter: masters.Optimized[i])).ToList();
        // As Hugging Face's Trainer: no weight decay on biases and LayerNorm weights. The head has its own peak rate.
        double headRate = _s.HeadLearningRate ?? _s.LearningRate;
        var groups = new List<AdamWUpdate.Group>();
        foreach (bool head in new[] { false, true })
            foreach (bool decays in new[] { true, false })
            {
                var members = optimized
                    .Where(p => PeftModel.IsHeadParameter(p.Name) == head && NoDecay(p.Name) != decays)
                    .Select(p => p.Parameter).ToList();
                if (members.Count == 0) continue;
                groups.Add(new AdamWUpdate.Group(members, head ? headRate : _s.LearningRate,
                    decays ? _s.WeightDecay : 0.0));
            }
        using var optimizer = new AdamWUpdate(groups);

        _model.train();
        TrainingMemoryPlan? memory = null;
        if (_s.MemoryBudget is { } budget)
        {
            memory = PlanMemory(budget, train, trainable.Sum(p => p.Parameter.numel()), mixed);
            log?.Invoke(memory.ToString());
            // The measuring passes drew dropout masks: start from the seed again, so a budget never changes the run.
            torch.manual_seed(_s.Seed);
        }
        _probeRows = train;
        _probeRng = new Random(_s.Seed + 1);
        Method.OnTrainingStart(_model, this);
        optimizer.ZeroGrad();

        var watch = System.Diagnostics.Stopwatch.StartNew();
        long tokens = 0;
        int step = 0, bestEpoch = 0, epochsRun = 0, sinceBest = 0;
        bool outOfTime = false;
        double? bestMetric = null;
        double bestLoss = double.PositiveInfinity;
        double runningLoss = double.NaN, lastRate = 0;
        Dictionary<string, Tensor>? best = null;
        int finalFormStep = Method.FinalFormStep(totalSteps);
        try
        {
            for (int epoch = 1; epoch <= _s.Epochs; epoch++)
            {
                _model.train();
                int epochSteps = 0;
                foreach (var batch in BatchPlanner.ForTraining(lengths, _s.BatchSize, _s.TokenBudget, rng))
                {
                    cancel.ThrowIfCancellationRequested();
                    checkAlive();
                    if (_s.TimeLimit is { } limit && watch.Elapsed >= limit) { outOfTime = true; break; }
                    double factor = _s.TimeLimit is { } timeLimit
                        ? TimedSchedule(step, warmup, totalSteps, watch.Elapsed / timeLimit, _s.WarmupRatio)
                        : Schedule(step, warmup, totalSteps);
                    double lr = lastRate = _s.LearningRate * factor;
                    optimizer.ZeroGrad();
                    masters.ZeroModelGrads();
                    var (l, batchTokens) = Backward(train, batch);
                    Method.OnAfterBackward(_model);
                    masters.GradsToMasters();
                    if (_s.MaxGradNorm > 0) AdamWUpdate.ClipGradientNorm(masters.Optimized, _s.MaxGradNorm);
                    // Each group's rate is its peak (the body's or the head's) times the schedule's factor.
                    optimizer.Step(factor);
                    masters.MastersToModel();
                    if (!double.IsFinite(l))
                        throw new InvalidOperationException(
                            $"Training diverged: the loss became {l} at step {step + 1}. Lower the learning rate.");
                    runningLoss = double.IsNaN(runningLoss) ? l : 0.9 * runningLoss + 0.1 * l;
                    tokens += batchTokens;
                    step++;
                    epochSteps++;
                    Method.OnStepEnd(_model, step, totalSteps);
                    if (progress is not null && (step % _s.LogEverySteps == 0 || step == totalSteps))
                        progress(Report(epoch, step, totalSteps, runningLoss, lr, tokens, watch.Elapsed, null));
                }
                if (epochSteps == 0) break; // the time ran out before this epoch began: nothing new to score
                epochsRun = epoch;
                if (validation is { Count: > 0 })
                {
                    var (metric, validationLoss) = Score(validation);
                    progress?.Invoke(Report(epoch, step, totalSteps, runningLoss, lastRate, tokens, watch.Elapsed,
                        metric));
                    // Epochs before the method's final form (AdaLoRA's last budget cut) are only reported. Equal
                    // accuracy (at the majority class, say) goes to the epoch with the lower cross-entropy: the one
                    // that learned more.
                    bool counts = step >= finalFormStep;
                    bool better = counts && (bestMetric is null || (_s.Task == PeftTask.Classification
                        ? metric > bestMetric || (metric == bestMetric && validationLoss < bestLoss)
                        : metric < bestMetric));
                    if (better)
                    {
                        bestMetric = metric; bestLoss = validationLoss; bestEpoch = epoch; sinceBest = 0;
                        DisposeAll(best);
                        best = Snapshot(optimized);
                    }
                    else if (counts && _s.EarlyStoppingPatience > 0 && ++sinceBest >= _s.EarlyStoppingPatience) break;
                }
                else bestEpoch = epoch;
                if (outOfTime) break;
            }
            if (best is not null && bestEpoch != epochsRun) Restore(optimized, best, masters);
        }
        finally
        {
            DisposeAll(best);
            _model.eval();
            if (mixed)
            {
                // Back to float32 from the float32 copies, not from the bf16-rounded weights, so merging and saving are
                // exact.
                _model.CastTo(ScalarType.Float32);
                using var _ = no_grad();
                var byName = _model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                foreach (var (name, t) in frozen!) byName[name].copy_(t);
                for (int i = 0; i < trainable.Count; i++) byName[trainable[i].Name].copy_(masters.Optimized[i]);
                DisposeAll(frozen);
            }
        }
        return new TrainingReport(epochsRun, bestEpoch, bestMetric, MetricName, runningLoss,
            tokens / Math.Max(watch.Elapsed.TotalSeconds, 1e-9), watch.Elapsed, 0, outOfTime) { Memory = memory };
    }

    /// <summary>
    /// One optimizer step's forward and backward over <paramref name="batch"/>: in one pass, or, where the memory
    /// budget allows fewer rows, in several whose gradients add up in the parameters. Each pass's mean loss is weighted
    /// by its share of the batch's rows, so the sum is the whole batch's mean-loss gradient. The method's extra loss
    /// (AdaLoRA's orthogonality term) is added once.
    /// </summary>
    /// <returns>The batch's loss and its real (unpadded) tokens.</returns>
    internal (double Loss, long Tokens) Backward(IReadOnlyList<Example> rows, int[] batch)
    {
        var passes = _rowsPerPass <= 0 && _tokensPerPass <= 0 ? [batch]
            : BatchPlanner.Split(batch, Array.ConvertAll(batch, i => rows[i].Length), _rowsPerPass, _tokensPerPass);
        double total = 0;
        long tokens = 0;
        for (int k = 0; k < passes.Count; k++)
        {
            using var scope = NewDisposeScope();
            var part = passes[k];
            var input = PaddedBatch.Collate(part.Select(i => rows[i].Row).ToArray(), _padId, _device);
            var output = _model.forward(input.InputIds, input.AttentionMask, input.TokenTypeIds).to(ScalarType.Float32);
            var loss = Loss(output, part.Select(i => rows[i].Label).ToArray());
            if (passes.Count > 1) loss = loss * (part.Length / (double)batch.Length);
            if (k == 0 && Method.ExtraLoss(_model) is { } extra) loss = loss + extra;
            loss.backward();
            _model.bert.encoder.ThrowIfBackwardFailed();
            total += loss.item<float>();
            tokens += input.RealTokens;
        }
        return (total, tokens);
    }

    /// <summary>Limits each forward and backward pass to <paramref name="rows"/> rows and
    /// <paramref name="tokens"/> padded tokens (0: no limit); the optimizer step stays the whole batch.</summary>
    internal void LimitPasses(int rows, int tokens) => (_rowsPerPass, _tokensPerPass) = (rows, tokens);

    /// <summary>
    /// Measures what a pass costs on this model and decides how many rows of the longest length one pass may hold
    /// within <paramref name="budget"/> (gradient checkpointing on when passes would otherwise be tiny), then limits
    /// the passes and the validation batches to it.
    /// </summary>
    private TrainingMemoryPlan PlanMemory(long budget, IReadOnlyList<Example> train, long trainableCount, bool mixed)
    {
        int longestIndex = 0;
        for (int i = 1; i < train.Count; i++) if (train[i].Length > train[longestIndex].Length) longestIndex = i;
        int longest = train[longestIndex].Length;
        // Adam's two moments, the best epoch's copy and (bf16) the float32 master gradients, allocated later.
        long optimizerBytes = trainableCount * sizeof(float) * (mixed ? 4 : 3);
        var encoder = _model.bert.encoder;
        var attentions = _model.modules().OfType<BertSelfAttention>().ToList();
        var dropouts = attentions.Select(a => a.AttentionDropout).ToList();
        bool fusedAllowed = _s.AttentionDropoutAdjustable && dropouts.Any(d => d > 0);
        var plan = MemoryPlanner.Decide((fused, checkpointing) =>
        {
            Apply(fused, checkpointing);
            return Measure(checkpointing) with { FusedAttention = fused };
        }, _s.BatchSize, fusedAllowed, encoder.GradientCheckpointing);
        Apply(plan.FusedAttention, plan.GradientCheckpointing);
        if (plan.AccumulationSteps > 1) LimitPasses(plan.RowsPerPass, plan.TokensPerPass);
        // Scoring keeps one layer's activations at a time where training keeps them all, so validation batches may
        // hold that many times the rows of a training pass.
        if (plan.AccumulationSteps > 1)
            _validationScorer = new TorchScorer(_model, _s.BatchSize,
                Math.Max(longest, plan.TokensPerPass * _model.bert.Config.NumHiddenLayers), _padId, _device);
        return plan;

        void Apply(bool fused, bool checkpointing)
        {
            for (int i = 0; i < attentions.Count; i++) attentions[i].AttentionDropout = fused ? 0 : dropouts[i];
            encoder.GradientCheckpointing = checkpointing;
        }

        TrainingMemoryPlan Measure(bool checkpointing)
        {
            int elementBytes = _s.ComputeType == ScalarType.Float32 ? 4 : 2;
            var (perRow, fixedBytes, before, measured) = MemoryCalibration.Run(rows => CalibrationPass(train,
                longestIndex, rows), _model.bert.Config, longest, elementBytes, checkpointing);
            long used = Math.Max(0, before - _s.StartResidentBytes);
            int fit = MemoryPlanner.RowsThatFit(budget, used, fixedBytes + optimizerBytes, perRow);
            int rowsPerPass = Math.Clamp(fit, 1, _s.BatchSize);
            return new TrainingMemoryPlan(budget, used, perRow, fixedBytes + optimizerBytes, longest, _s.BatchSize,
                rowsPerPass, (_s.BatchSize + rowsPerPass - 1) / rowsPerPass, checkpointing, measured)
            { OverBudget = fit == 0 };
        }
    }

    // A forward and backward over copies of one row, for measuring only: it leaves no gradient behind. Gradients that
    // did not exist go back to none, not to zeros: AdamW skips a parameter without one (as PyTorch's does), so a zero
    // would start moments and weight decay on parameters the loss never reaches.
    private void CalibrationPass(IReadOnlyList<Example> train, int index, int rows)
    {
        var hadNone = _model.parameters().Where(p => p.grad is null).ToList();
        using (var scope = NewDisposeScope())
        {
            var row = train[index];
            var input = PaddedBatch.Collate(Enumerable.Repeat(row.Row, rows).ToArray(), _padId, _device);
            var output = _model.forward(input.InputIds, input.AttentionMask, input.TokenTypeIds).to(ScalarType.Float32);
            Loss(output, Enumerable.Repeat(row.Label, rows).ToArray()).backward();
            _model.bert.encoder.ThrowIfBackwardFailed();
        }
        using var _ = no_grad();
        foreach (var p in _model.parameters()) p.grad?.zero_();
        foreach (var p in hadNone) p.grad = null;
    }

    private IReadOnlyList<Example>? _probeRows;
    private Random? _probeRng;

    int ITrainingProbe.AccumulateGradients(int maxBatches)
    {
        var rows = _probeRows
            ?? throw new InvalidOperationException("The probe is only available while training starts.");
        int run = 0;
        foreach (var batch in BatchPlanner.ForTraining(rows.Select(r => r.Length).ToArray(), _s.BatchSize,
            _s.TokenBudget, _probeRng!))
        {
            if (run == maxBatches) break;
            using var scope = NewDisposeScope();
            var input = PaddedBatch.Collate(batch.Select(i => rows[i].Row).ToArray(), _padId, _device);
            var output = _model.forward(input.InputIds, input.AttentionMask, input.TokenTypeIds).to(ScalarType.Float32);
            Loss(output, batch.Select(i => rows[i].Label).ToArray()).backward();
            _model.bert.encoder.ThrowIfBackwardFailed();
            run++;
        }
        return run;
    }

    private TrainingProgress Report(int epoch, int step, int total, double loss, double lr, long tokens,
        TimeSpan elapsed, double? metric)
    {
        double perStep = elapsed.TotalSeconds / Math.Max(step, 1);
        var remaining = TimeSpan.FromSeconds(perStep * (total - step));
        if (_s.TimeLimit is { } limit && limit - elapsed < remaining)
            remaining = limit > elapsed ? limit - elapsed : TimeSpan.Zero;
        return new TrainingProgress(epoch, _s.Epochs, step, total, loss, lr,
            tokens / Math.Max(elapsed.TotalSeconds, 1e-9), elapsed,
            remaining, metric, metric is null ? null : MetricName);
    }

    private static bool NoDecay(string name) =>
        name.EndsWith(".bias", StringComparison.Ordinal) || name.Contains("LayerNorm", StringComparison.Ordinal);

    /// <summary>Linear warm-up to 1, then linear decay to 0.</summary>
    internal static double Schedule(int step, int warmup, int total)
    {
        if (step < warmup) return (step + 1.0) / warmup;
        return Math.Max(0.0, (total - step) / (double)Math.Max(1, total - warmup));
    }

    /// <summary>
    /// <see cref="Schedule"/> under a time limit: progress is whichever is further along, steps or elapsed time, so the
    /// rate warms up over the first <paramref name="warmupRatio"/> of the run and reaches zero by the deadline.
    /// </summary>
    internal static double TimedSchedule(int step, int warmup, int total, double timeFraction, double warmupRatio)
    {
        double progress = Math.Max(step / (double)Math.Max(1, total), timeFraction);
        if (progress < warmupRatio)
            return Math.Min(1.0, Math.Max(progress / warmupRatio, (step + 1.0) / Math.Max(1, warmup)));
        return Math.Clamp((1.0 - progress) / (1.0 - warmupRatio), 0.0, 1.0);
    }

    private Tensor Loss(Tensor output, float[] labels)
    {
        if (_s.Task == PeftTask.Classification)
        {
            using var target = tensor(labels.Select(l => (long)l).ToArray(), device: _device);
            return nn.functional.cross_entropy(output, target);
        }
        using var y = tensor(labels, device: _device);
        return nn.functional.mse_loss(output.squeeze(-1), y);
    }

    /// <summary>Accuracy (classification) or RMSE (regression) on <paramref name="rows"/>.</summary>
    public double Evaluate(IReadOnlyList<Example> rows) => Score(rows).Metric;

    /// <summary>
    /// Accuracy with the mean cross-entropy (classification), or RMSE with NaN (regression), on
    /// <paramref name="rows"/>.
    /// </summary>
    private (double Metric, double Loss) Score(IReadOnlyList<Example> rows)
    {
        var outputs = _validationScorer.Score(rows.Select(r => r.Row).ToArray());
        if (_s.Task == PeftTask.Classification)
        {
            int correct = 0;
            double crossEntropy = 0;
            for (int i = 0; i < rows.Count; i++)
            {
                int label = (int)rows[i].Label;
                if (HeadOutputs.ArgMax(outputs[i]) == label) correct++;
                crossEntropy += HeadOutputs.CrossEntropy(outputs[i], label);
            }
            return (correct / (double)rows.Count, crossEntropy / rows.Count);
        }
        double se = 0;
        for (int i = 0; i < rows.Count; i++) se += Math.Pow(outputs[i][0] - rows[i].Label, 2);
        return (_s.Labels.ErrorToLabelUnits(Math.Sqrt(se / rows.Count)), double.NaN);
    }

    // Best-epoch snapshots hold the optimizer's weights (the float32 masters in bf16 mode), then flow down to the
    // model.
    private static Dictionary<string, Tensor> Snapshot(IEnumerable<(string Name, Parameter Parameter)> parameters)
    {
        using var _ = no_grad();
        return parameters.ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
    }

    private static void Restore(IEnumerable<(string Name, Parameter Parameter)> optimized,
        Dictionary<string, Tensor> snapshot, MasterWeights masters)
    {
        using (no_grad())
            foreach (var (name, p) in optimized) p.copy_(snapshot[name]);
        masters.MastersToModel();
    }

    private static void DisposeAll(Dictionary<string, Tensor>? d)
    {
        if (d is null) return;
        foreach (var t in d.Values) t.Dispose();
        d.Clear();
    }
}
