using System.Diagnostics;
using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Peft.Sweep;
using Microsoft.ML.Peft.Sweep.Storage;
using Microsoft.ML.Peft.Tests.BaseModels;
using Microsoft.ML.Peft.Tests.MLNet;
using Microsoft.ML.Peft.Tests.Stages;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>
/// Workers of one study as separate processes (tests/SweepWorker): they share the trial budget, a killed worker's
/// trial is declared lost and retried by the survivor, and real trials on the tiny base leave a best model that any
/// process can load from the database.
/// </summary>
[TestClass]
public sealed class SweepWorkerProcessTests
{
    /// <summary>A running SweepWorker whose stdout lines are collected as they come.</summary>
    private sealed class WorkerProcess : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];
        private readonly Task<string> _stderr;

        public WorkerProcess(params string[] args)
        {
            var start = new ProcessStartInfo(PeftTransformerBaseTests.DotnetHost())
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var arg in args.Prepend(WorkerPath())) start.ArgumentList.Add(arg);
            _process = Process.Start(start)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is { } l) lock (_lines) _lines.Add(l); };
            _process.BeginOutputReadLine();
            _stderr = _process.StandardError.ReadToEndAsync();
        }

        public List<string> Lines { get { lock (_lines) return [.. _lines]; } }

        /// <summary>The trials this worker started.</summary>
        public List<int> Started => Lines.Where(l => l.StartsWith("START ", StringComparison.Ordinal))
            .Select(l => int.Parse(l[6..], System.Globalization.CultureInfo.InvariantCulture)).ToList();

        public void WaitUntil(Func<List<string>, bool> condition, string what)
        {
            var clock = Stopwatch.StartNew();
            while (!condition(Lines))
            {
                Assert.IsFalse(_process.HasExited && !condition(Lines),
                    $"worker exited before {what}: {_stderr.Result}");
                Assert.IsTrue(clock.Elapsed < TimeSpan.FromMinutes(2), $"timed out waiting for {what}");
                Thread.Sleep(50);
            }
        }

        public void WaitForSuccess()
        {
            Assert.IsTrue(_process.WaitForExit(TimeSpan.FromMinutes(3)), "worker timed out");
            _process.WaitForExit(); // drains the output events
            Assert.AreEqual(0, _process.ExitCode, $"worker failed: {_stderr.Result}");
        }

        public void Kill() => _process.Kill(entireProcessTree: true);

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }

    private static string WorkerPath()
    {
        string? configured = typeof(SweepWorkerProcessTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "SweepWorkerPath")?.Value;
        Assert.IsNotNull(configured, "SweepWorkerPath assembly metadata missing");
        Assert.IsTrue(File.Exists(configured), $"SweepWorker not built at {configured}");
        return configured;
    }

    private static List<StoredTrial> Rows(string storage, string study) =>
        new StudyStore(StorageLocation.Parse(storage, null), study).LoadTrials();

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public void TwoWorkerProcessesFinishAStudyWithNoTrialRunTwiceOrLost(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        using var go = new EmbeddedOnnx.TempFolder();
        string signal = Path.Combine(go.Path, "go");
        string[] args = ["--storage", db.ConnectionString, "--study", "two", "--trials", "10", "--sleep-ms", "400",
            "--wait-for", signal];
        using var a = new WorkerProcess(args);
        using var b = new WorkerProcess(args);
        // Both are up (runtime and libraries loaded) before either claims, so both take part.
        a.WaitUntil(l => l.Contains("READY"), "worker a to start");
        b.WaitUntil(l => l.Contains("READY"), "worker b to start");
        File.WriteAllText(signal, "");
        a.WaitForSuccess();
        b.WaitForSuccess();

        var rows = Rows(db.ConnectionString, "two");
        CollectionAssert.AreEqual(Enumerable.Range(0, 10).ToList(), rows.Select(r => r.Number).ToList());
        Assert.IsTrue(rows.All(r => r.State == StudySchema.Complete));
        var started = a.Started.Concat(b.Started).Order().ToList();
        CollectionAssert.AreEqual(Enumerable.Range(0, 10).ToList(), started, "each trial started exactly once");
        Assert.IsTrue(a.Started.Count > 0 && b.Started.Count > 0, $"a ran {a.Started.Count}, b {b.Started.Count}");
        Assert.AreEqual(2, rows.Select(r => r.Worker).Distinct().Count());
        // Both report the study's best, not their own.
        Assert.AreEqual(a.Lines.Single(l => l.StartsWith("BEST", StringComparison.Ordinal)),
            b.Lines.Single(l => l.StartsWith("BEST", StringComparison.Ordinal)));
    }

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public void AKilledWorkersTrialIsMarkedFailedAndRetriedByTheOther(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        using (var doomed = new WorkerProcess("--storage", db.ConnectionString, "--study", "k", "--trials", "3",
            "--sleep-ms", "120000", "--heartbeat", "2"))
        {
            doomed.WaitUntil(l => l.Contains("START 0"), "the first trial to start");
            doomed.Kill();
        }
        using var survivor = new WorkerProcess("--storage", db.ConnectionString, "--study", "k", "--trials", "3",
            "--sleep-ms", "100", "--heartbeat", "2", "--retry");
        survivor.WaitForSuccess();

        var rows = Rows(db.ConnectionString, "k");
        var lost = rows.Single(r => r.Number == 0);
        Assert.AreEqual(StudySchema.Failed, lost.State);
        StringAssert.Contains(lost.Error, "heartbeat");
        Assert.IsNotNull(lost.RetriedBy);
        var retry = rows.Single(r => r.Number == lost.RetriedBy);
        Assert.AreEqual(StudySchema.Complete, retry.State);
        Assert.AreEqual(0, retry.RetryOf);
        Assert.AreEqual(lost.Parameters.ToJson(), retry.Parameters.ToJson());
        // Three counted trials (the lost one is counted by its retry), all complete, none running.
        Assert.AreEqual(3, rows.Count(r => r.RetriedBy is null));
        Assert.IsTrue(rows.Where(r => r.RetriedBy is null).All(r => r.State == StudySchema.Complete));
        CollectionAssert.AreEquivalent(rows.Where(r => r.Number != 0).Select(r => r.Number).ToList(),
            survivor.Started);
    }

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public void TwoWorkerProcessesTrainTheTinyBaseAndTheBestModelLoadsAnywhere(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        using var temp = new EmbeddedOnnx.TempFolder();
        var (onnx, vocab) = new TinyOnnx().WriteTo(Path.Combine(temp.Path, "base"));
        void Tsv(string file, List<Stages.TextRow> rows) => File.WriteAllLines(Path.Combine(temp.Path, file),
            rows.Select(r => $"{r.Label}\t{r.Text}").Prepend("Label\tText"));
        Tsv("train.tsv", StageTestData.Negation(48, 1));
        Tsv("validation.tsv", StageTestData.Negation(24, 2));
        string[] args = ["--storage", db.ConnectionString, "--study", "tiny", "--trials", "4", "--data", temp.Path,
            "--onnx", onnx, "--vocab", vocab];
        using var a = new WorkerProcess(args);
        using var b = new WorkerProcess(args);
        a.WaitForSuccess();
        b.WaitForSuccess();

        var study = PeftSweep.LoadStudy(db.ConnectionString, "tiny");
        Assert.AreEqual(4, study.Trials.Count);
        Assert.IsTrue(study.Trials.All(t => t.Status == TrialStatus.Succeeded), study.Trials[0].Error);
        var stored = new StudyStore(StorageLocation.Parse(db.ConnectionString, null), "tiny").LoadBestModel();
        Assert.AreEqual(study.BestTrial.Id, stored?.Number, "the stored model is the best trial's");

        var ml = new MLContext(3);
        var model = PeftSweep.LoadBest(db.ConnectionString, "tiny", ml);
        var validation = StageTestData.Load(ml, StageTestData.Negation(24, 2));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(validation));
        // The stored model scores the validation rows as its trial did when it was selected.
        Assert.AreEqual(study.BestTrial.Metric, metrics.MicroAccuracy, 1e-6);
    }
}
