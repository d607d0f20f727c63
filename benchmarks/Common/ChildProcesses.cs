using System.Diagnostics;
using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Peft.Benchmarks;

/// <summary>
/// Re-launches the running benchmark as a child process for one measurement: peak RSS (VmHWM) is process-wide and never
/// goes down, so each point needs a process of its own. The child prints one result line starting with a prefix.
/// </summary>
internal static class ChildProcess
{
    /// <summary>Runs this program again with <paramref name="args"/> and returns the JSON after
    /// <paramref name="resultPrefix"/>, or null with the exit code and the last stderr lines.</summary>
    /// <param name="threads">libtorch threads in the child (OMP_NUM_THREADS/MKL_NUM_THREADS); 0 keeps libtorch's
    /// default.</param>
    /// <param name="echo">Where the child's other output lines go.</param>
    public static (string? ResultJson, int ExitCode, string ErrorTail) Run(IEnumerable<string> args, int threads,
        string resultPrefix, Action<string> echo)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false };
        if (threads > 0)
        {
            // libtorch reads these when it loads, before any code of ours could call torch.set_num_threads.
            psi.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
            psi.Environment["MKL_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        }
        string self = Environment.ProcessPath
            ?? throw new InvalidOperationException("Cannot find this program's executable.");
        psi.FileName = self;
        // Under 'dotnet Program.dll' the process is the dotnet host: hand it the assembly again.
        if (Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var lastErrors = new Queue<string>();
        using var child = new Process { StartInfo = psi };
        child.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            echo(e.Data);
            lock (lastErrors)
            {
                lastErrors.Enqueue(e.Data);
                if (lastErrors.Count > 5) lastErrors.Dequeue();
            }
        };
        if (!child.Start()) throw new InvalidOperationException($"Cannot start '{self}'.");
        child.BeginErrorReadLine();
        string? result = null, line;
        while ((line = child.StandardOutput.ReadLine()) is not null)
        {
            if (line.StartsWith(resultPrefix, StringComparison.Ordinal)) result = line[resultPrefix.Length..];
            else echo(line);
        }
        child.WaitForExit();
        lock (lastErrors) return (result, child.ExitCode, string.Join(" / ", lastErrors));
    }
}

/// <summary>Finds shared/data/&lt;name&gt; next to (above) the repository.</summary>
internal static class DataLocator
{
    public static string? Find(string name)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "shared", "data", name);
                if (File.Exists(Path.Combine(candidate, "train.tsv"))) return candidate;
            }
        return null;
    }
}

/// <summary>Size fields of /proc/self/status, read with the library's parser (tested on eight-digit values).</summary>
internal static class ProcStatus
{
    /// <summary>A size field (<c>VmRSS:</c> or <c>VmHWM:</c>), in bytes; 0 where /proc is absent.</summary>
    public static long Read(string field) => field switch
    {
        "VmRSS:" => Microsoft.ML.Peft.Runtime.ProcessMemory.Resident() ?? 0,
        "VmHWM:" => Microsoft.ML.Peft.Runtime.ProcessMemory.Peak() ?? 0,
        _ => throw new ArgumentException($"Unknown /proc/self/status field '{field}'.", nameof(field)),
    };
}
