using Microsoft.ML.Peft.Modeling;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Training;

/// <summary>Batched inference: length-sorted batches, no gradients, outputs copied out once per batch.</summary>
internal static class Predictor
{
    public static float[][] Predict(PeftModel model, IReadOnlyList<Example> rows, int batchSize, int tokenBudget, long padId, Device device, bool softmax)
    {
        var results = new float[rows.Count][];
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            foreach (var batch in BatchPlanner.ForScoring(rows.Select(r => r.Length).ToArray(), batchSize, tokenBudget))
            {
                using var scope = NewDisposeScope();
                var (ids, mask, types, _) = Collator.Collate(rows, batch, padId, device);
                var output = model.forward(ids, mask, types).to(ScalarType.Float32);
                if (softmax) output = output.softmax(-1);
                var flat = output.cpu().data<float>().ToArray();
                int k = (int)output.shape[1];
                for (int r = 0; r < batch.Length; r++) results[batch[r]] = flat.AsSpan(r * k, k).ToArray();
            }
        }
        finally { model.train(wasTraining); }
        return results;
    }
}
