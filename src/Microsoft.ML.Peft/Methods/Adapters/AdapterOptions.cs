namespace Microsoft.ML.Peft.Methods.Adapters;

/// <summary>The activation between an adapter's down- and up-projection (AdapterHub's <c>non_linearity</c>).</summary>
public enum AdapterNonLinearity
{
    /// <summary>max(0, x).</summary>
    Relu,
    /// <summary>Gaussian error linear unit (exact form).</summary>
    Gelu,
    /// <summary>Hyperbolic tangent.</summary>
    Tanh,
    /// <summary>x · sigmoid(x) (SiLU).</summary>
    Swish,
}

/// <summary>Where sequential bottleneck adapters go in each layer.</summary>
public enum BottleneckAdapterPlacement
{
    /// <summary>
    /// Houlsby et al. (2019): after the attention output projection and after the feed-forward output projection (2 per
    /// layer).
    /// </summary>
    Houlsby,
    /// <summary>Pfeiffer et al. (2021): after the feed-forward output projection only (1 per layer).</summary>
    Pfeiffer,
}

/// <summary>Which sub-layers a parallel adapter sits beside.</summary>
public enum ParallelAdapterPlacement
{
    /// <summary>Beside the feed-forward block (He et al.'s recommended place).</summary>
    Ffn,
    /// <summary>Beside the attention block.</summary>
    Attention,
    /// <summary>Beside both (2 per layer).</summary>
    Both,
}
