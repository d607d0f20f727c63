// ModelLoadProbe: loads an ML.NET model .zip in a fresh process and prints output columns, one row per line.
//
// Usage: ModelLoadProbe [--assembly <path.dll>]... [--native-report] <model.zip> <data.tsv> <column>...
//   --assembly   loads an assembly first (one that registers loadable classes but is not referenced here);
//                ML.NET then finds it by the loader assembly name stored in the model.
//   --native-report  after scoring, prints "#libtorch <mapped libtorch*/LibTorchSharp native libraries, or none>"
//                (from /proc/self/maps; the managed TorchSharp.dll does not count)
//                and "#peak-rss-kb <VmHWM>" (from /proc/self/status): proof of what scoring loaded.
//   data.tsv     tab-separated text, no header; its columns are the model's input schema columns, in order (text only).
// Exit code 0 on success; 1 with the error on stderr otherwise.
using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Testing;

try
{
    var positional = new List<string>();
    bool nativeReport = false;
    for (int i = 0; i < args.Length; i++)
    {
        if (args[i] == "--assembly" && i + 1 < args.Length)
            Assembly.LoadFrom(Path.GetFullPath(args[++i]));
        else if (args[i] == "--native-report")
            nativeReport = true;
        else
            positional.Add(args[i]);
    }
    if (positional.Count < 3)
    {
        Console.Error.WriteLine("usage: ModelLoadProbe [--assembly <path.dll>]... <model.zip> <data.tsv> <column>...");
        return 2;
    }

    var ml = new MLContext(seed: 1);
    var model = ml.Model.Load(positional[0], out var inputSchema);
    var loaderColumns = inputSchema
        .Where(c => !c.IsHidden)
        .Select((c, i) => c.Type is TextDataViewType
            ? new TextLoader.Column(c.Name, DataKind.String, i)
            : throw new NotSupportedException(
                $"Input column '{c.Name}' is {c.Type}; the probe reads text columns only."))
        .ToArray();
    var data = ml.Data
        .LoadFromTextFile(positional[1], loaderColumns, separatorChar: '\t', hasHeader: false, allowQuoting: false);
    foreach (var line in RowFormatter.Format(model.Transform(data), positional.Skip(2).ToArray()))
        Console.WriteLine(line);
    if (nativeReport)
    {
        var torch = File.ReadLines("/proc/self/maps")
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "")
            .Where(p => Path.GetFileName(p).StartsWith("libtorch", StringComparison.OrdinalIgnoreCase)
                || Path.GetFileName(p).Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase))
            .Distinct().ToList();
        Console.WriteLine("#libtorch " + (torch.Count == 0 ? "none" : string.Join(" ", torch)));
        var peak = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        Console.WriteLine("#peak-rss-kb " + peak.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }
    return 0;
}
catch (Exception ex)
{
    Console.Error.WriteLine(ex.ToString());
    return 1;
}
