using Microsoft.ML.Peft.Modeling;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Prompt;

/// <summary>
/// Serves the trainable <c>prompt_embeddings</c> [P, H] (an embedding table registered on the model) to
/// <c>BertModel.Prompt</c>. It holds the module, not its weight, so it follows the weight when the model moves device.
/// </summary>
/// <param name="table">The trainable prompt.</param>
/// <param name="throughEmbeddings">peft's layout (<see cref="PromptTuningConfig.PeftLayout"/>).</param>
internal sealed class PromptEmbedding(Embedding table, bool throughEmbeddings) : IInputPrompt
{
    public int Length => (int)table.weight!.shape[0];

    public bool ThroughEmbeddings => throughEmbeddings;

    public Tensor Embeddings(long batch, ScalarType dtype, Device device) =>
        table.weight!.to(dtype, device).unsqueeze(0).expand(batch, -1, -1);
}
