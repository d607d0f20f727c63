using Microsoft.ML.Peft.Runtime;

namespace Microsoft.ML.Peft.Tests.Runtime;

[TestClass]
public sealed class TorchRuntimeTests
{
    [TestMethod]
    public void LoadsOnThisMachine()
    {
        TorchRuntime.EnsureLoaded();
        using var t = TorchSharp.torch.ones(3);
        Assert.AreEqual(3f, t.sum().item<float>());
    }

    internal static bool HasRequiredLibstdcxx() =>
        new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" }
            .Any(p => File.Exists(p) && TorchRuntime.LibraryHasSymbolVersion(p, TorchRuntime.RequiredGlibcxx));

    [TestMethod]
    public void ExplainsMissingLibstdcxxVersion()
    {
        // A file without the symbol version must be detected as lacking it; the real library must have it.
        var fake = Path.GetTempFileName();
        try
        {
            File.WriteAllText(fake, "GLIBCXX_3.4.30\0GLIBCXX_3.4.31\0");
            Assert.IsFalse(TorchRuntime.LibraryHasSymbolVersion(fake, TorchRuntime.RequiredGlibcxx));
            File.AppendAllText(fake, "GLIBCXX_3.4.32\0");
            Assert.IsTrue(TorchRuntime.LibraryHasSymbolVersion(fake, TorchRuntime.RequiredGlibcxx));
        }
        finally { File.Delete(fake); }
        var msg = TorchRuntime.Explain(new TypeInitializationException("TorchSharp.torch",
            new DllNotFoundException("libLibTorchSharp.so")));
        StringAssert.Contains(msg, "libLibTorchSharp.so");
    }
}
