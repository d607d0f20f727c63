using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Modeling;

/// <summary>Maps Hugging Face <c>hidden_act</c> names to TorchSharp functions.</summary>
internal static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" =>
            x => nn.functional.gelu(x, approximate: TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => x => nn.functional.relu(x),
        "silu" or "swish" => x => nn.functional.silu(x),
        _ => throw new ArgumentException(
            $"Encoder config 'hidden_act' value '{name}' is not supported (use gelu, gelu_new, relu or silu)."),
    };
}
