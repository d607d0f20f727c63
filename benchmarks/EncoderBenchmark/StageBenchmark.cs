// --stage: scoring throughput of a trained LoRA text-classification stage (what an ML.NET user runs:
// transformer.Transform(dataView), fully consumed through a cursor) with ScoringEngine OnnxRuntime (float32) and with
// ScoringEngine TorchSharp in float32 and bfloat16, against ONNX Runtime running the same embedded ONNX base model on
// the same token ids in the same batch sizes.

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Peft.BaseModels;
using Microsoft.ML.Peft.MLNet;
using Microsoft.ML.Peft.Runtime;
using Microsoft.ML.Peft.Tokenization;
using Microsoft.ML.Peft.Training;
using TorchSharp;

namespace Microsoft.ML.Peft.Benchmarks;

internal static class StageBenchmark
{
    /// <summary>Tokens per timed run (full runs): enough batches that the per-Transform cost is spread as it is in
    /// use.</summary>
    private const int TokensPerRun = 8192;

    private sealed class TrainRow
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private sealed class TextRow
    {
        public string Sentence1 { get; set; } = "";
    }

    /// <summary>Largest |Score difference| accepted between the fp32 stage's two engines.</summary>
    private const double EngineTolerance = 1e-4;

    private sealed record StageRow(int Batch, int Seq, int Rows, double OrtMs, double OrtStageMs, double Fp32Ms,
        double Bf16Ms, string Fp32Type, string Bf16Type, double EngineDiff, double ExportFp32Ms, double ExportInt8Ms)
    {
        public double ExportFp32 => Tokens / (ExportFp32Ms / 1000);
        public double ExportInt8 => Tokens / (ExportInt8Ms / 1000);
        public double Tokens => (double)Rows * Seq;
        public double Ort => Tokens / (OrtMs / 1000);
        public double OrtStage => Tokens / (OrtStageMs / 1000);
        public double Fp32 => Tokens / (Fp32Ms / 1000);
        public double Bf16 => Tokens / (Bf16Ms / 1000);
    }

    public static int Run(Options options)
    {
        var total = Stopwatch.StartNew();
        double? loadAtStart = Program.LoadAverage();
        TorchRuntime.EnsureLoaded();
        torch.set_num_threads(options.Threads);

        var baseModel = options.Model == "arcticxs" ? BaseModel.ArcticXs() : BaseModel.MiniLM();
        string package = options.Model == "arcticxs" ? "ArcticXs" : "MiniLM";
        var tokenizer = baseModel.CreateTokenizer();
        byte[] onnxBytes = Program.ReadEmbeddedOnnx(package);
        using var sessionOptions = new SessionOptions
        {
            IntraOpNumThreads = options.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        using var session = new InferenceSession(onnxBytes, sessionOptions);

        // Training rows: short generated sentences (one each, ~15-25 tokens), labelled by the sense of their verb. The
        // stage trains briefly; only MaxSequenceLength (the length under test) and BatchSize (the scoring batch)
        // matter.
        var ml = new MLContext(seed: 1);
        int trainRows = options.Quick ? 64 : 256;
        var random = new Random(7);
        var trainList = Enumerable.Range(0, trainRows).Select(_ =>
        {
            string text = SyntheticText.Sentence(random);
            return new TrainRow { Sentence1 = text, Label = SyntheticText.LabelOf(text) };
        }).ToList();
        var train = ml.Data.LoadFromEnumerable(trainList);

        PrintHeader(options, baseModel, trainRows, loadAtStart);

        var results = new List<StageRow>();
        foreach (var (batchSize, seq) in options.Shapes.OrderBy(s => s.Seq))
        {
            int batches = options.Quick ? 1 : Math.Max(1, TokensPerRun / (batchSize * seq));
            int rows = batchSize * batches;
            var textRandom = new Random(seq);
            var texts = Enumerable.Range(0, rows).Select(_ => SyntheticText.OfTokens(tokenizer, textRandom, seq))
                .ToList();
            var scoring = ml.Data.LoadFromEnumerable(texts.Select(t => new TextRow { Sentence1 = t }).ToList());
            // ORT gets the ids the stage's own tokenizer makes of the same texts (the base model's WordPiece
            // vocabulary, truncated to seq): every row is exactly seq tokens, so there is no padding on either side.
            var tokenBatches = texts.Chunk(batchSize).Select(chunk =>
            {
                var b = tokenizer.EncodeBatch(chunk.Select(t => (string?)t).ToList(), null, seq);
                if (b.SequenceLength != seq || b.Lengths.Any(l => l != seq))
                    throw new InvalidOperationException($"Expected every row to hold {seq} tokens; got " +
                        $"{string.Join(",", b.Lengths)}.");
                return b;
            }).ToList();

            using var fp32 = Train(ml, train, baseModel, seq, batchSize, options.Threads,
                PeftPrecision.Float32, out var fp32Fit);
            using var bf16 = Train(ml, train, baseModel, seq, batchSize, options.Threads,
                PeftPrecision.BFloat16, out var bf16Fit);
            Console.Error.WriteLine($"  [{batchSize}x{seq}] trained fp32 stage in {fp32Fit.TotalSeconds:F1} s " +
                $"({fp32.ScoringPrecision}, merged {fp32.IsMerged}), " +
                                    $"bf16 stage in {bf16Fit.TotalSeconds:F1} s ({bf16.ScoringPrecision}, merged " +
                                        $"{bf16.IsMerged})");
            // The fp32 stage scores with either engine; the first switch to ONNX Runtime builds its graph and session.
            var switchWatch = Stopwatch.StartNew();
            double engineDiff = EngineDifference(fp32, scoring, rows);
            Console.Error.WriteLine($"  [{batchSize}x{seq}] fp32 stage: ScoringEngine OnnxRuntime ready in " +
                $"{switchWatch.Elapsed.TotalSeconds:F1} s (graph and session; both engines scored once); max |Score " +
                $"OnnxRuntime - TorchSharp| {engineDiff:0.0E+0}");

            var ort = new OrtRunner(session, tokenBatches);
            // The stage's exported model, float32 and dynamic int8, on the same ids in bare sessions.
            using var exportedFp32 = new InferenceSession(Export(fp32, int8: false), sessionOptions);
            using var exportedInt8 = new InferenceSession(Export(fp32, int8: true), sessionOptions);
            var fp32Export = new OrtRunner(exportedFp32, tokenBatches);
            var int8Export = new OrtRunner(exportedInt8, tokenBatches);
            try
            {
                Action ortRun = ort.Run;
                Action ortStageRun = () => Score(fp32, ScoringEngine.OnnxRuntime, scoring, rows);
                Action fp32Run = () => Score(fp32, ScoringEngine.TorchSharp, scoring, rows);
                Action bf16Run = () => Score(bf16, ScoringEngine.TorchSharp, scoring, rows);
                Action[] engines = [ortRun, ortStageRun, fp32Run, bf16Run, fp32Export.Run, int8Export.Run];
                for (int i = 0; i < options.WarmUp; i++)
                    foreach (var run in engines) run();
                GC.Collect();
                GC.WaitForPendingFinalizers();
                // Timed runs alternate between the engines, so a change in background load affects all four alike.
                var ms = engines.Select(_ => new double[options.Iterations]).ToArray();
                for (int i = 0; i < options.Iterations; i++)
                    for (int e = 0; e < engines.Length; e++)
                        ms[e][i] = Program.TimeOnce(_ => engines[e]());
                double Median(int engine) => Program.Summarize(ms[engine]).Median;
                var row = new StageRow(batchSize, seq, rows, Median(0), Median(1), Median(2), Median(3),
                    fp32.ScoringPrecision, bf16.ScoringPrecision, engineDiff, Median(4), Median(5));
                results.Add(row);
                Console.Error.WriteLine($"  [{batchSize}x{seq}] {rows} rows per run: ORT {row.OrtMs:F1} ms, stage " +
                    $"via ORT {row.OrtStageMs:F1} ms, stage fp32 {row.Fp32Ms:F1} ms, stage bf16 {row.Bf16Ms:F1} ms");
            }
            finally
            {
                ort.Dispose();
                fp32Export.Dispose();
                int8Export.Dispose();
            }
        }

        Console.WriteLine($"Scoring throughput (median of {options.Iterations} timed runs after {options.WarmUp} " +
            "warm-up; " +
                          "tokens/s = rows*seq / median run time; every row exactly seq tokens, no padding):");
        Console.WriteLine();
        string Tps(double v) => v.ToString("N0", CultureInfo.InvariantCulture);
        string Ratio(double v) => v.ToString("F2", CultureInfo.InvariantCulture) + "x";
        Program.PrintTable(
            ["batch x seq", "rows/run", "ORT fp32 tok/s", "stage via ORT tok/s", "via ORT stage/ORT",
                "stage fp32 tok/s", "fp32 stage/ORT", "stage bf16 tok/s", "bf16 stage/ORT"],
            results.Select(r => new[]
            {
                $"{r.Batch} x {r.Seq}", r.Rows.ToString(CultureInfo.InvariantCulture), Tps(r.Ort), Tps(r.OrtStage),
                Ratio(r.OrtStage / r.Ort), Tps(r.Fp32), Ratio(r.Fp32 / r.Ort), Tps(r.Bf16), Ratio(r.Bf16 / r.Ort),
            }).ToList(),
            rightAlignFrom: 1);
        Console.WriteLine();
        Console.WriteLine("The stage's exported ONNX model (ExportOnnx), float32 and QuantizeInt8, in bare ONNX " +
            "Runtime sessions on the same ids (no tokenization):");
        Console.WriteLine();
        Program.PrintTable(
            ["batch x seq", "export fp32 tok/s", "export int8 tok/s", "int8/fp32", "export fp32/ORT encoder"],
            results.Select(r => new[]
            {
                $"{r.Batch} x {r.Seq}", Tps(r.ExportFp32), Tps(r.ExportInt8), Ratio(r.ExportInt8 / r.ExportFp32),
                Ratio(r.ExportFp32 / r.Ort),
            }).ToList(),
            rightAlignFrom: 1);
        Console.WriteLine();
        Console.WriteLine("The stage's figures include everything Transform does: WordPiece tokenization of the raw " +
            "text, the encoder (LoRA merged into the base weights), pooling, the classification head and softmax, " +
            "and the IDataView cursor. \"stage via ORT\" is the fp32 stage with ScoringEngine = OnnxRuntime (its " +
            "graph built in memory, float32); \"stage fp32\" and \"stage bf16\" score with ScoringEngine = " +
            "TorchSharp. ONNX Runtime's figures are the encoder alone (last_hidden_state) on ids tokenized " +
            "beforehand, so a ratio of 1.00x means the whole stage keeps up with ORT's bare encoder.");
        double worstDiff = results.Max(r => r.EngineDiff);
        Console.WriteLine(worstDiff <= EngineTolerance
            ? $"The fp32 stage's two engines agree within {EngineTolerance:0E+0} (max abs Score difference " +
              $"{worstDiff:0.0E+0})."
            : $"ERROR: the fp32 stage's engines differ by {worstDiff:0.0E+0} (> {EngineTolerance:0E+0}).");
        var wrongType = results.Where(r => r.Fp32Type != "Float32" || r.Bf16Type != "BFloat16").ToList();
        if (wrongType.Count > 0)
            Console.WriteLine("WARNING: a stage scored in another precision than asked: " +
                $"{string.Join(", ", wrongType.Select(r => $"{r.Seq}: {r.Fp32Type}/{r.Bf16Type}"))}.");
        Console.WriteLine();
        double? loadAtEnd = Program.LoadAverage();
        Console.WriteLine($"Total run time: {total.Elapsed.TotalSeconds:F0} s" +
                          (loadAtEnd is null ? "" : $"; 1-minute load average at the end {loadAtEnd:F2} (this run " +
                              $"alone adds about {options.Threads})"));
        return wrongType.Count == 0 && worstDiff <= EngineTolerance ? 0 : 1;
    }

    private static byte[] Export(PeftTextTransformer stage, bool int8)
    {
        using var stream = new MemoryStream();
        stage.ExportOnnx(stream, new OnnxExportOptions { QuantizeInt8 = int8 });
        return stream.ToArray();
    }

    /// <summary>Trains a LoRA classification stage (r = 8, alpha = 16 on query and value) for 1 epoch; merged for
    /// scoring.</summary>
    /// <remarks>ScoringEngine is set to TorchSharp (Auto may pick ONNX Runtime); NumberOfThreads is what both engines
    /// score with (libtorch intra-op, ONNX Runtime intra-op).</remarks>
    private static PeftTextTransformer Train(MLContext ml, IDataView train, BaseModel baseModel, int seq, int batchSize,
        int threads, PeftPrecision precision, out TimeSpan elapsed)
    {
        var options = new PeftTextClassificationOptions
        {
            LabelColumnName = "Label", Sentence1ColumnName = "Sentence1", BaseModel = baseModel,
            Epochs = 1, BatchSize = batchSize, MaxSequenceLength = seq, Precision = precision, MergeForScoring = true,
            ScoringEngine = ScoringEngine.TorchSharp, NumberOfThreads = threads,
        };
        // Fit draws new weights (adapters, head) from libtorch's global generator; seed it so runs repeat.
        torch.manual_seed(1);
        var watch = Stopwatch.StartNew();
        var chain = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Peft().LoraTextClassification(options))
            .Fit(train);
        elapsed = watch.Elapsed;
        Console.WriteLine($"- trained the stage in {elapsed.TotalSeconds:F0} s; peak RSS so far " +
            $"{(Microsoft.ML.Peft.Runtime.ProcessMemory.Peak() ?? 0) >> 20} MiB");
        return chain.LastTransformer;
    }

    /// <summary>The largest |Score| difference between the stage's ONNX Runtime and TorchSharp engines.</summary>
    private static double EngineDifference(PeftTextTransformer stage, IDataView data, int expectedRows)
    {
        var viaOrt = new List<float[]>();
        var viaTorch = new List<float[]>();
        Score(stage, ScoringEngine.OnnxRuntime, data, expectedRows, viaOrt);
        Score(stage, ScoringEngine.TorchSharp, data, expectedRows, viaTorch);
        double max = 0;
        foreach (var (a, b) in viaOrt.Zip(viaTorch))
            for (int i = 0; i < a.Length; i++)
            {
                double d = Math.Abs(a[i] - b[i]);
                if (!(d <= max)) max = double.IsNaN(d) ? double.PositiveInfinity : d;
            }
        return max;
    }

    /// <summary>What a user does: Transform, then read every row's Score through a cursor; with
    /// <paramref name="keep"/>, each row's Score is copied into it.</summary>
    private static void Score(PeftTextTransformer stage, ScoringEngine engine, IDataView data, int expectedRows,
        List<float[]>? keep = null)
    {
        // Switching is a field swap once the engine exists; checked, since the stage could fall back.
        stage.ScoringEngine = engine;
        if (stage.ActiveScoringEngine != engine)
            throw new InvalidOperationException($"The stage scores with {stage.ActiveScoringEngine}, not {engine}.");
        var scored = stage.Transform(data);
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([column]);
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> score = default;
        int rows = 0;
        while (cursor.MoveNext())
        {
            getter(ref score);
            keep?.Add(score.DenseValues().ToArray());
            rows++;
        }
        if (rows != expectedRows || score.Length != 2)
            throw new InvalidOperationException($"Scored {rows} rows of {score.Length} classes; expected " +
                $"{expectedRows} of 2.");
    }

    /// <summary>ONNX Runtime over pre-made OrtValues, one Run per batch, as in the encoder comparison.</summary>
    private sealed class OrtRunner : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly List<string> _names;
        private readonly List<List<OrtValue>> _values;
        private readonly string _output;
        private readonly RunOptions _runOptions = new();

        public OrtRunner(InferenceSession session, IReadOnlyList<TokenBatch> batches)
        {
            _session = session;
            _names = session.InputNames.ToList();
            _output = session.OutputNames.Contains("last_hidden_state") ? "last_hidden_state" : session.OutputNames[0];
            _values = batches.Select(batch =>
            {
                long[] shape = [batch.BatchSize, batch.SequenceLength];
                var wanted = new Dictionary<string, long[]>
                {
                    ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.AttentionMask,
                    ["token_type_ids"] = batch.TokenTypeIds,
                };
                foreach (var n in _names)
                    if (!wanted.ContainsKey(n)) throw new InvalidOperationException("The ONNX model has an " +
                        $"unexpected input '{n}'.");
                return _names.Select(n => OrtValue.CreateTensorValueFromMemory(wanted[n], shape)).ToList();
            }).ToList();
        }

        public void Run()
        {
            foreach (var values in _values)
            {
                using var outputs = _session.Run(_runOptions, _names, values, [_output]);
            }
        }

        public void Dispose()
        {
            foreach (var v in _values.SelectMany(x => x)) v.Dispose();
            _runOptions.Dispose();
        }
    }

    private static void PrintHeader(Options options, BaseModel model, int trainRows, double? loadAtStart)
    {
        var c = model.Config;
        Console.WriteLine("# Scoring benchmark: trained LoRA stage vs ONNX Runtime, " +
            $"{model.Name}{(options.Quick ? " (--quick)" : "")}");
        Console.WriteLine();
        Console.WriteLine($"- model: {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, {c.NumAttentionHeads} heads");
        Console.WriteLine($"- machine: {CpuInfo.Name()}, {Environment.ProcessorCount} logical CPUs; " +
            $"{RuntimeInformation.OSDescription}; " +
                          $"bf16 in hardware (AVX512-BF16/AMX): {(PrecisionPolicy.CpuSupportsBFloat16() ? "yes"
                              : "no: bf16 figures are emulated and slow")}");
        Console.WriteLine($"- threads: torch.set_num_threads({options.Threads}) (get_num_threads = " +
            $"{torch.get_num_threads()}), " +
                          $"ORT intra-op {options.Threads}, inter-op 1, ORT_ENABLE_ALL");
        Console.WriteLine($"- versions: {RuntimeInformation.FrameworkDescription}, TorchSharp " +
            $"{Program.Version(typeof(torch).Assembly)}, " +
                          $"ONNX Runtime {OrtEnv.Instance().GetVersionString()}");
        Console.WriteLine("- stage: ml.Peft().LoraTextClassification (r = 8, alpha = 16, query and value), 1 epoch " +
            $"on {trainRows} short generated " +
                          "rows, MaxSequenceLength = seq, BatchSize = the batch below (its scoring batch), " +
                              "MergeForScoring = true, " +
                          "Precision = Float32 or BFloat16; timed: stage.Transform(data) with every row's Score read " +
                              "through a cursor");
        Console.WriteLine("- stage engines: the fp32 stage with ScoringEngine = OnnxRuntime (\"via ORT\") and both " +
            $"stages with ScoringEngine = TorchSharp; NumberOfThreads = {options.Threads} (libtorch intra-op, or ORT " +
            "intra-op in the stage's own session, ORT_ENABLE_ALL)");
        Console.WriteLine("- ORT: InferenceSession over the embedded ONNX model (float32), one Run per batch on the " +
            "same token ids, encoder only");
        if (loadAtStart is { } load)
            Console.WriteLine($"- 1-minute load average before the run: {load:F2}" +
                              (load > 0.5
                                  ? "  WARNING: other processes are using the CPUs; figures will be low and noisy"
                                  : ""));
        Console.WriteLine();
    }
}
