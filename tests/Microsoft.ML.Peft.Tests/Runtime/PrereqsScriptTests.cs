using System.Diagnostics;

namespace Microsoft.ML.Peft.Tests.Runtime;

[TestClass]
public sealed class PrereqsScriptTests
{
    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PeftTrainers.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("Repository root (PeftTrainers.sln) not found above "
            + AppContext.BaseDirectory);
    }

    private static (int Code, string Output) Run(string script)
    {
        var start = new ProcessStartInfo("bash", [script]) { RedirectStandardOutput = true,
            RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(start)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.IsTrue(p.WaitForExit(TimeSpan.FromMinutes(5)));
        return (p.ExitCode, output);
    }

    [TestMethod]
    public void SecondRunIsAQuickNoOp()
    {
        string script = Path.Combine(RepoRoot(), "eng", "prereqs.sh");
        var first = Run(script); // installs if needed (the test command already ran it once)
        Assert.AreEqual(0, first.Code, first.Output);
        var watch = Stopwatch.StartNew();
        var second = Run(script);
        Assert.AreEqual(0, second.Code, second.Output);
        StringAssert.Contains(second.Output, "Nothing to do");
        Assert.IsFalse(second.Output.Contains("installing", StringComparison.OrdinalIgnoreCase), second.Output);
        Assert.IsTrue(Runtime.TorchRuntimeTests.HasRequiredLibstdcxx(),
            "after the script, libstdc++ must provide GLIBCXX_3.4.32");
    }
}
