using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>
/// A bottleneck adapter in a block's <see cref="Modeling.BertResidualOutput.Adapter"/> slot:
/// <c>h + s · up(dropout(act(down(u))))</c>, where u is the block's projected output h (sequential) or the sub-layer's
/// input (parallel). <c>adapter_up</c> starts at zero, so an untrained adapter returns h unchanged. With a gate
/// (UniPELT) the update is also multiplied per token by <c>sigmoid(adapter_gate(u))</c>.
/// </summary>
internal sealed class BottleneckAdapter : nn.Module<Tensor, Tensor, Tensor>
{
    internal readonly Linear adapter_down;
    internal readonly Linear adapter_up;
    internal readonly Dropout adapter_dropout;
    internal readonly Linear? adapter_gate;
    private readonly Func<Tensor, Tensor> _activation;
    private readonly bool _parallel;
    private readonly double _scaling;

    /// <summary>
    /// The name under which a block registers its adapter (parameters read
    /// <c>...output.adapter.adapter_down.weight</c>).
    /// </summary>
    public const string ChildName = "adapter";

    public BottleneckAdapter(int hidden, int bottleneck, AdapterNonLinearity nonLinearity, bool parallel,
        double scaling, double dropout, bool gated, Device device)
        : base("adapter")
    {
        adapter_down = nn.Linear(hidden, bottleneck, device: device);
        adapter_up = nn.Linear(bottleneck, hidden, device: device);
        adapter_dropout = nn.Dropout(dropout);
        if (gated) adapter_gate = nn.Linear(hidden, 1, device: device);
        _activation = nonLinearity switch
        {
            AdapterNonLinearity.Relu => x => nn.functional.relu(x),
            AdapterNonLinearity.Gelu => x => nn.functional.gelu(x),
            AdapterNonLinearity.Tanh => x => x.tanh(),
            AdapterNonLinearity.Swish => x => nn.functional.silu(x),
            _ => throw new ArgumentOutOfRangeException(nameof(nonLinearity)),
        };
        _parallel = parallel;
        _scaling = scaling;
        using (no_grad())
        {
            // He et al.'s (and LoRA's) init: down as nn.Linear's default (Kaiming-uniform, a = √5), zero bias; up all
            // zeros, so the adapter starts as the identity and the first steps move up before down.
            nn.init.kaiming_uniform_(adapter_down.weight!, Math.Sqrt(5));
            nn.init.zeros_(adapter_down.bias!);
            nn.init.zeros_(adapter_up.weight!);
            nn.init.zeros_(adapter_up.bias!);
            if (adapter_gate is not null)
            {
                // As UniPELT's gates: N(0, 0.02) weights and zero bias, so every gate starts near 0.5.
                nn.init.normal_(adapter_gate.weight!, 0, 0.02);
                nn.init.zeros_(adapter_gate.bias!);
            }
        }
        RegisterComponents();
    }

    /// <summary>
    /// Returns h plus the adapter's update computed from h (sequential) or from <paramref name="residual"/> (parallel).
    /// </summary>
    public override Tensor forward(Tensor h, Tensor residual)
    {
        using var scope = NewDisposeScope();
        var input = _parallel ? residual : h;
        var update = adapter_up.forward(adapter_dropout.forward(_activation(adapter_down.forward(input))));
        if (_scaling != 1.0) update = update * _scaling;
        if (adapter_gate is not null) update = update * adapter_gate.forward(input).sigmoid();
        return (h + update).MoveToOuterDisposeScope();
    }

    /// <summary>Trainable parameters of one adapter: <c>H·b + b + b·H + H</c> (+ <c>H + 1</c> with a gate).</summary>
    public static long ParameterCount(int hidden, int bottleneck, bool gated) =>
        (long)hidden * bottleneck + bottleneck + (long)bottleneck * hidden + hidden + (gated ? hidden + 1 : 0);
}
