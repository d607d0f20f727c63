using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.Tokenization;

namespace Microsoft.ML.Peft.Inference;

/// <summary>
/// The ONNX Runtime engine: the stage's graph (built in memory with <c>StageGraph</c>, raw head outputs) in one
/// <see cref="InferenceSession"/>, fed length-sorted batches (<see cref="BatchPlanner.ForScoring"/>) exactly as
/// <see cref="TorchScorer"/> is. It loads no libtorch: a stage scored by it runs where TorchSharp's native library
/// cannot.
/// </summary>
internal sealed class OnnxScorer : IScorer, IDisposable
{
    private readonly InferenceSession _session;
    private readonly int _padTokenId;

    /// <param name="model">The serialized ONNX model with inputs <c>input_ids</c>, <c>attention_mask</c>,
    /// <c>token_type_ids</c> and the raw head output.</param>
    /// <param name="outputName">The raw head output's name.</param>
    /// <param name="batchSize">Most rows per run.</param>
    /// <param name="tokenBudget">Most padded tokens per run; 0 for no limit.</param>
    /// <param name="padTokenId">The tokenizer's pad id.</param>
    /// <param name="threads">ONNX Runtime intra-op threads; null for its default (one per core).</param>
    public OnnxScorer(byte[] model, string outputName, int batchSize, int tokenBudget, int padTokenId, int? threads)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (threads is int t) options.IntraOpNumThreads = t;
        _session = new InferenceSession(model, options);
        OutputName = outputName;
        BatchSize = batchSize;
        TokenBudget = tokenBudget;
        _padTokenId = padTokenId;
    }

    public string OutputName { get; }
    public int BatchSize { get; }
    public int TokenBudget { get; }

    public float[][] Score(IReadOnlyList<TokenizedText> rows)
    {
        return BatchPlanner.ScoreInBatches(rows, BatchSize, TokenBudget, batch =>
        {
            var padded = TokenBatch.FromRows(batch, _padTokenId);
            long[] shape = [padded.BatchSize, padded.SequenceLength];
            using var ids = OrtValue.CreateTensorValueFromMemory(padded.InputIds, shape);
            using var mask = OrtValue.CreateTensorValueFromMemory(padded.AttentionMask, shape);
            using var types = OrtValue.CreateTensorValueFromMemory(padded.TokenTypeIds, shape);
            using var runOptions = new RunOptions();
            using var outputs = _session.Run(runOptions,
                ["input_ids", "attention_mask", "token_type_ids"], [ids, mask, types], [OutputName]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        });
    }

    public void Dispose() => _session.Dispose();
}
