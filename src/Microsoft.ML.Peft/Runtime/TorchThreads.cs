using TorchSharp;

namespace Microsoft.ML.Peft.Runtime;

/// <summary>
/// Sets libtorch's intra-op thread count for a block and restores it afterwards. With libtorch's OpenMP backend the
/// count is an OpenMP setting of the calling thread, so the block's own work uses it while other threads keep theirs.
/// </summary>
internal readonly struct TorchThreads : IDisposable
{
    private readonly int _previous;

    private TorchThreads(int previous) => _previous = previous;

    /// <summary>Uses <paramref name="threads"/> until disposed; null changes nothing.</summary>
    public static TorchThreads Use(int? threads)
    {
        if (threads is not { } n) return default;
        TorchRuntime.EnsureLoaded();
        int previous = torch.get_num_threads();
        if (previous != n) torch.set_num_threads(n);
        return new TorchThreads(previous);
    }

    /// <summary>Restores the thread count seen when the block started.</summary>
    public void Dispose()
    {
        if (_previous > 0 && torch.get_num_threads() != _previous) torch.set_num_threads(_previous);
    }
}
