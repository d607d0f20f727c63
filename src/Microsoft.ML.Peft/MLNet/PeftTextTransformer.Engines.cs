using Google.Protobuf;
using TorchSharp;
using Microsoft.ML.Peft.Inference;
using Microsoft.ML.Peft.Modeling;
using Microsoft.ML.Peft.Onnx;
using Microsoft.ML.Peft.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Peft.MLNet;

// The two scoring engines behind IScorer: the libtorch model (built on first need for a loaded stage) and the ONNX
// Runtime session (built from the stage's graph), and the rule that picks one.
public sealed partial class PeftTextTransformer
{
    private IScorer Scorer
    {
        get
        {
            lock (_engineGate) return _scorer ??= ChooseScorer();
        }
    }

    /// <summary>The libtorch model, built from the base and the trained tensors the first time it is needed.</summary>
    private PeftModel TorchModel
    {
        get
        {
            lock (_torchGate) return _model ??= BuildTorchModel();
        }
    }

    private TorchScorer TorchEngine
    {
        get
        {
            lock (_torchGate)
                return _torchScorer ??= new TorchScorer(TorchModel, BatchSize, ScoringTokenBudget,
                    _tokenizer.PadTokenId, _device!, _saved.NumberOfThreads);
        }
    }

    /// <summary>
    /// Padded tokens per scoring batch: the stage's <see cref="PeftTextOptions.TokenBudget"/> when set; else as many
    /// as fit the default memory budget on this machine (a quarter of the available memory, at most 3 GiB) by the
    /// cost of scoring a row of the longest length, so long rows score in smaller batches. 0 when a whole batch
    /// fits.
    /// </summary>
    internal int ScoringTokenBudget => _saved.TokenBudget > 0 ? _saved.TokenBudget
        : MemoryPlanner.ScoringTokenBudget(_base.Config, _saved.MaxSequenceLength, BatchSize,
            MemoryPlanner.DefaultBudget(Runtime.ProcessMemory.Available()));

    private PeftModel BuildTorchModel()
    {
        Runtime.TorchRuntime.EnsureLoaded();
        _device ??= PeftDevice.Resolve(_env);
        var encoder = _base.CreateEncoder(withPooler: _saved.Pooling == Pooling.Pooler);
        var model = PeftModel.CreateForInference(encoder, _method, _saved.NumOutputs, _saved.Pooling,
            _saved.HeadDropout, _saved.PairEncoding, _saved.HeadLayer);
        var trained = TorchWeights.ToTorch(_trained);
        try { model.LoadTrainedTensors(trained); }
        finally { foreach (var t in trained.Values) t.Dispose(); }
        if (_saved.Merged) model.Merge();
        model.to(_device);
        model.CastTo(PrecisionPolicy.Resolve(_saved.Precision, _device));
        model.Freeze();
        return model;
    }

    /// <summary>
    /// The runtime this stage scores with (<see cref="MLNet.ScoringEngine.Auto"/> by default). Setting it switches
    /// engines at once (building the ONNX graph when needed) and is saved with the model.
    /// </summary>
    /// <exception cref="InvalidOperationException">OnnxRuntime was asked for, ONNX Runtime cannot load and
    /// <see cref="FallbackToTorchSharp"/> is off.</exception>
    public ScoringEngine ScoringEngine
    {
        get => _saved.ScoringEngine;
        set
        {
            if (!Enum.IsDefined(value))
                throw new ArgumentOutOfRangeException(nameof(ScoringEngine), $"Unknown ScoringEngine {value}.");
            var previous = _saved.ScoringEngine;
            _saved.ScoringEngine = value;
            try { lock (_engineGate) _scorer = ChooseScorer(); }
            catch { _saved.ScoringEngine = previous; throw; }
        }
    }

    /// <summary>
    /// Score with TorchSharp (logging a warning) when <see cref="ScoringEngine"/> is OnnxRuntime and ONNX Runtime
    /// cannot load, instead of failing. Saved with the model. Default false.
    /// </summary>
    public bool FallbackToTorchSharp
    {
        get => _saved.FallbackToTorchSharp;
        set => _saved.FallbackToTorchSharp = value;
    }

    /// <summary>The engine scoring now: <see cref="ScoringEngine"/> with Auto and any fallback resolved.</summary>
    public ScoringEngine ActiveScoringEngine => Scorer is OnnxScorer ? ScoringEngine.OnnxRuntime
        : ScoringEngine.TorchSharp;

    private OnnxScorer NewOnnxScorer()
    {
        byte[] graph = BuildOnnxModel(rawOutput: true).ToByteArray();
        // The managed weights the graph was built from (a base's worth, twice with the transposed matrices) are
        // garbage now; collect them before ONNX Runtime makes its own copies, so the peak holds one set, not two.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        try
        {
            return new OnnxScorer(graph, StageGraph.RawOutput, BatchSize, ScoringTokenBudget, _tokenizer.PadTokenId,
                _saved.NumberOfThreads);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            // ONNX Runtime's message names the node and op it rejects; say which stage's graph it was.
            throw new NotSupportedException(
                $"ONNX Runtime cannot run the graph of this '{_method.MethodName}' stage: {e.Message}", e);
        }
    }

    // Whether the libtorch engine would score in bf16 here, decided without loading libtorch when it is not loaded.
    private bool ScoresInBf16() => _model is not null
        ? _model.classifier.weight!.dtype == ScalarType.BFloat16
        : PrecisionPolicy.ResolvesToBFloat16(_saved.Precision, gpuRequested:
            (_env as IHostEnvironmentInternal)?.GpuDeviceId is not null);

    private IScorer ChooseScorer()
    {
        bool auto = _saved.ScoringEngine == ScoringEngine.Auto;
        bool bf16 = auto && ScoresInBf16();
        var wanted = auto ? EngineChoice.Choose(bf16) : _saved.ScoringEngine;
        if (auto)
        {
            using var ch = Host.Start("Scoring engine");
            ch.Info($"Auto engine: {wanted} (the stage scores in {(bf16 ? "bf16" : "float32")} here; "
                + "ONNX Runtime is chosen for float32, TorchSharp where the CPU computes bf16: see docs/onnx.md).");
        }
        if (wanted == ScoringEngine.TorchSharp) return TorchEngine;
        try
        {
            return _onnxScorer ??= NewOnnxScorer();
        }
        catch (Exception e) when (auto && e is NotSupportedException)
        {
            using var ch = Host.Start("Scoring engine");
            ch.Info($"Auto engine: TorchSharp, since this stage cannot run on ONNX Runtime ({e.Message}).");
            return TorchEngine;
        }
        catch (Exception e) when (EngineChoice.IsRuntimeMissing(e))
        {
            if (_saved.ScoringEngine == ScoringEngine.OnnxRuntime && !_saved.FallbackToTorchSharp)
                throw new InvalidOperationException(
                    $"ScoringEngine OnnxRuntime: ONNX Runtime's native library cannot load ({e.Message}). Install it, "
                    + "or set FallbackToTorchSharp to score with TorchSharp instead.", e);
            using var ch = Host.Start("Scoring engine");
            ch.Warning($"ONNX Runtime cannot load ({e.Message}); scoring with TorchSharp.");
            return TorchEngine;
        }
    }
}
