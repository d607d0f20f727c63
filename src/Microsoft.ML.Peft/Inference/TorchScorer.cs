using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Tokenization;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// The libtorch engine: length-sorted batches (<see cref="BatchPlanner.ForScoring"/>), no gradients, eval mode for the
/// call (a model being trained goes back to train mode after), outputs copied out once per batch.
/// </summary>
internal sealed class TorchScorer : IScorer
{
    private readonly PeftModel _model;
    private readonly int _padTokenId;
    private readonly Device _device;

    /// <param name="model">The model to run (not owned).</param>
    /// <param name="batchSize">Most rows per forward pass.</param>
    /// <param name="tokenBudget">Most padded tokens per forward pass; 0 for no limit.</param>
    /// <param name="padTokenId">The tokenizer's pad id.</param>
    /// <param name="device">Where the model lives.</param>
    /// <param name="threads">libtorch intra-op threads while scoring; null leaves libtorch's default.</param>
    public TorchScorer(PeftModel model, int batchSize, int tokenBudget, int padTokenId, Device device,
        int? threads = null)
    {
        _model = model;
        BatchSize = batchSize;
        TokenBudget = tokenBudget;
        _padTokenId = padTokenId;
        _device = device;
        Threads = threads;
    }

    public int BatchSize { get; }
    public int TokenBudget { get; }
    /// <summary>libtorch intra-op threads while scoring; null leaves libtorch's default.</summary>
    public int? Threads { get; set; }

    public float[][] Score(IReadOnlyList<TokenizedText> rows)
    {
        bool wasTraining = _model.training;
        _model.eval();
        try
        {
            using var threads = Runtime.TorchThreads.Use(Threads);
            using var _ = no_grad();
            return BatchPlanner.ScoreInBatches(rows, BatchSize, TokenBudget, batch =>
            {
                using var scope = NewDisposeScope();
                var input = PaddedBatch.Collate(batch, _padTokenId, _device);
                var output = _model.forward(input.InputIds, input.AttentionMask, input.TokenTypeIds)
                    .to(ScalarType.Float32);
                return output.cpu().data<float>().ToArray();
            });
        }
        finally { _model.train(wasTraining); }
    }
}
