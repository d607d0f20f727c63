using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using Microsoft.ML.Peft.Sweep;
using Microsoft.ML.Peft.Sweep.Storage;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>
/// Sweep storage in one process (synthetic trials): workers of a study share its budget, studies do not mix, the
/// tables refuse inconsistent rows, a stopped study resumes, rungs are shared, and bad settings are named.
/// </summary>
[TestClass]
public sealed class SweepStorageTests
{
    internal static PeftSearchSpace Space() => new PeftSearchSpace()
        .SetShared(new RangeParameter("LearningRate", 1e-4, 1e-2, defaultValue: 2e-3, logScale: true))
        .AddMethod("lora", new ChoiceParameter("Rank", 4, 8, 16, 32).WithDefault(8));

    private static double Score(TrialParameters p) =>
        1 - Math.Abs(Math.Log10(Convert.ToDouble(p.Values["LearningRate"], CultureInfo.InvariantCulture)) + 3) / 10;

    private static PeftSweep Worker(string storage, string study, int trials, Func<TrialParameters, double> score,
        int sleepMs = 0, PeftTuner? tuner = null) =>
        new MLContext(1).Peft().CreateSweep().SetSearchSpace(Space()).SetTuner(tuner ?? PeftTuner.Random(1))
            .SetStorage(storage, study).SetMaxTrials(trials)
            .SetTrialEvaluation((p, ct) =>
            {
                if (sleepMs > 0) Task.Delay(sleepMs, ct).GetAwaiter().GetResult();
                return new TrialOutcome(score(p));
            });

    private static List<StoredTrial> Rows(string storage, string study) =>
        new StudyStore(StorageLocation.Parse(storage, null), study).LoadTrials();

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public async Task ConcurrentWorkersRunEveryTrialOnceAndWithinTheBudget(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        var runs = new ConcurrentBag<string>();
        // Four workers on four threads: each claim races the others' claims and result writes.
        var workers = Enumerable.Range(0, 4).Select(_ => Task.Run(() => Worker(db.ConnectionString, "s", 12, p =>
        {
            runs.Add(p.ToJson());
            return Score(p);
        }, sleepMs: 30).RunAsync())).ToArray();
        var results = await Task.WhenAll(workers);

        var rows = Rows(db.ConnectionString, "s");
        CollectionAssert.AreEqual(Enumerable.Range(0, 12).ToList(), rows.Select(r => r.Number).ToList());
        Assert.IsTrue(rows.All(r => r.State == StudySchema.Complete), string.Join(",", rows.Select(r => r.State)));
        Assert.AreEqual(12, runs.Count, "every trial ran exactly once");
        CollectionAssert.AreEquivalent(runs.ToList(), rows.Select(r => r.Parameters.ToJson()).ToList());
        Assert.AreEqual(12, rows.Select(r => r.Parameters.ToJson()).Distinct().Count(), "no point claimed twice");
        foreach (var r in results)
        {
            Assert.AreEqual(12, r.Trials.Count, "each worker returns the study's leaderboard");
            Assert.AreEqual(rows.MaxBy(t => t.Metric)!.Number, r.BestTrial.Id);
        }
    }

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public async Task TwoStudiesInOneDatabaseDoNotMix(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        await Task.WhenAll(
            Task.Run(() => Worker(db.ConnectionString, "a", 5, _ => 0.25).RunAsync()),
            Task.Run(() => Worker(db.ConnectionString, "b", 3, _ => 0.75).RunAsync()));
        var a = PeftSweep.LoadStudy(db.ConnectionString, "a");
        var b = PeftSweep.LoadStudy(db.ConnectionString, "b");
        Assert.AreEqual(5, a.Trials.Count);
        Assert.AreEqual(3, b.Trials.Count);
        Assert.IsTrue(a.Trials.All(t => t.Metric == 0.25));
        Assert.IsTrue(b.Trials.All(t => t.Metric == 0.75));
        // Same tuner and seed, separate histories: each study proposes the same first points.
        CollectionAssert.AreEqual(b.Trials.Select(t => t.Parameters.ToJson()).ToList(),
            a.Trials.Take(3).Select(t => t.Parameters.ToJson()).ToList());
        Assert.ThrowsExactly<ArgumentException>(() => PeftSweep.LoadStudy(db.ConnectionString, "c"));
    }

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public async Task ResumingAStoppedStudyContinuesItWithoutRerunningTrials(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        int evaluations = 0;
        double Count(TrialParameters p) { Interlocked.Increment(ref evaluations); return Score(p); }
        // The cost-frugal tuner's proposals depend on every result so far: the replay must rebuild its state.
        await Worker(db.ConnectionString, "resumed", 3, Count, tuner: PeftTuner.CostFrugal(1)).RunAsync();
        Assert.AreEqual(3, evaluations);
        await Worker(db.ConnectionString, "resumed", 6, Count, tuner: PeftTuner.CostFrugal(1)).RunAsync();
        Assert.AreEqual(6, evaluations, "the resumed worker ran only the three new trials");
        // The replayed tuner proposes what one uninterrupted process would have (no storage: today's sweep).
        var oneProcess = await new MLContext(1).Peft().CreateSweep().SetSearchSpace(Space())
            .SetTuner(PeftTuner.CostFrugal(1)).SetMaxTrials(6).SetTrialEvaluation((p, _) => new TrialOutcome(Score(p)))
            .RunAsync();
        CollectionAssert.AreEqual(oneProcess.Trials.Select(t => t.Parameters.ToJson()).ToList(),
            Rows(db.ConnectionString, "resumed").Select(r => r.Parameters.ToJson()).ToList());
    }

    [TestMethod]
    [DataRow("sqlite")]
    [DataRow("postgres")]
    public async Task TheTablesRefuseRowsThatContradictTheirState(string backend)
    {
        using var db = StudyDatabase.Create(backend);
        await Worker(db.ConnectionString, "s", 1, Score).RunAsync();
        var location = StorageLocation.Parse(db.ConnectionString, null);
        using var c = location.CreateConnection();
        c.Open();
        void Refused(string sql)
        {
            using var cmd = c.CreateCommand();
            cmd.CommandText = sql;
            Assert.ThrowsExactly<InvalidOperationException>(() =>
            {
                try { cmd.ExecuteNonQuery(); }
                catch (DbException e) { throw new InvalidOperationException(e.Message, e); }
            }, sql);
        }
        Refused("UPDATE peft_trials SET state = 'done' WHERE number = 0");
        Refused("UPDATE peft_trials SET metric = NULL WHERE number = 0"); // complete needs its metric
        Refused("UPDATE peft_trials SET state = 'running', worker = NULL WHERE number = 0");
        Refused("INSERT INTO peft_trials (study, number, parameters, state) VALUES ('s', 0, '{}', 'waiting')");
        Refused("INSERT INTO peft_trials (study, number, parameters, state) VALUES ('nostudy', 5, '{}', 'waiting')");
        Refused("INSERT INTO peft_trials (study, number, parameters, state) VALUES ('s', -1, '{}', 'waiting')");
        Assert.AreEqual(StudySchema.Complete, Rows(db.ConnectionString, "s").Single().State);
    }

    [TestMethod]
    public async Task TheTimeBudgetIsTheStudysNotTheWorkers()
    {
        using var db = StudyDatabase.Create("sqlite");
        int evaluations = 0;
        PeftSweep Timed() => Worker(db.ConnectionString, "timed", 1000, p =>
        {
            Interlocked.Increment(ref evaluations);
            return Score(p);
        }, sleepMs: 150).SetTrainingTimeInSeconds(1.5);
        await Timed().RunAsync();
        int first = evaluations;
        Assert.IsTrue(first is >= 2 and < 20, $"{first} trials in 1.5 s");
        // A worker joining after the study's 1.5 s have passed runs nothing: its own clock would allow 1.5 s more.
        var late = await Timed().RunAsync();
        Assert.AreEqual(first, evaluations);
        // The trial cut off by the budget waits to be run again (a resumed study with more time would run it).
        var rows = Rows(db.ConnectionString, "timed");
        Assert.AreEqual(StudySchema.Waiting, rows[^1].State);
        Assert.AreEqual(rows.Count - 1, late.Trials.Count);
    }

    [TestMethod]
    public async Task WithoutAConnectionStringTheStudyIsAFileInTheCheckpointFolder()
    {
        using var folder = new Microsoft.ML.Peft.Tests.BaseModels.EmbeddedOnnx.TempFolder();
        await Worker("unused.db", "f", 2, Score).SetStorage(null, "f").SetCheckpointFolder(folder.Path).RunAsync();
        string file = Path.Combine(folder.Path, StorageLocation.DefaultFileName);
        Assert.IsTrue(File.Exists(file));
        Assert.IsFalse(File.Exists(Path.Combine(folder.Path, "trials.jsonl")), "the study replaces trials.jsonl");
        Assert.AreEqual(2, PeftSweep.LoadStudy(file, "f").Trials.Count);
        var noFolder = await Assert.ThrowsExactlyAsync<ArgumentException>(() =>
            Worker("unused.db", "f", 2, Score).SetStorage(null, "f").RunAsync());
        Assert.AreEqual("connectionString", noFolder.ParamName);
    }

    [TestMethod]
    public async Task ASqliteClaimHoldsTheWriteLockFromItsStart()
    {
        using var db = StudyDatabase.Create("sqlite");
        await Worker(db.ConnectionString, "s", 1, Score).RunAsync();
        var location = StorageLocation.Parse(db.ConnectionString, null);
        using var first = location.CreateConnection();
        first.Open();
        using var claim = StudyStore.Begin(first);
        // A second writer cannot start while the first transaction has only begun (a deferred BEGIN would let both
        // read, and then one would fail to write).
        using var second = new Microsoft.Data.Sqlite.SqliteConnection(location.ConnectionString + ";Default Timeout=1");
        second.Open();
        var busy = Assert.ThrowsExactly<Microsoft.Data.Sqlite.SqliteException>(() => StudyStore.Begin(second));
        Assert.AreEqual(5, busy.SqliteErrorCode, busy.Message); // SQLITE_BUSY
        claim.Rollback();
        using var after = StudyStore.Begin(second);
        after.Rollback();
    }

    [TestMethod]
    public async Task SuccessiveHalvingComparesWithTheRungsOfOtherWorkers()
    {
        using var db = StudyDatabase.Create("sqlite");
        PeftSweep Halving(double loss, int trials) => new MLContext(1).Peft().CreateSweep().SetSearchSpace(Space())
            .SetTuner(PeftTuner.Random(1)).SetStorage(db.ConnectionString, "asha").SetMaxTrials(trials)
            .SetEarlyStopping(reductionFactor: 2, minEpochs: 1)
            .SetTrialEvaluation((p, reporter, ct) =>
            {
                reporter.ReportEpoch(1, loss);
                reporter.ReportEpoch(2, loss, isLastEpoch: true);
                return new TrialOutcome(1 - loss);
            });
        await Halving(0.1, 2).RunAsync();
        // Alone, a worker's first trial is never stopped (a rung needs η = 2 losses); this one's rung at epoch 1
        // holds the other worker's 0.1, 0.1 and its 0.9, of which only the best 2 go on.
        var result = await Halving(0.9, 3).RunAsync();
        var third = result.Trials.Single(t => t.Id == 2);
        Assert.AreEqual(TrialStatus.Pruned, third.Status, third.Error);
        StringAssert.Contains(third.Error, "best 2 of 3");
    }

    [TestMethod]
    public async Task BadStorageSettingsNameTheOption()
    {
        var sweep = new MLContext(1).Peft().CreateSweep();
        var unknown = Assert.ThrowsExactly<ArgumentException>(() => sweep.SetStorage("mysql://h/db", "s"));
        Assert.AreEqual("connectionString", unknown.ParamName);
        StringAssert.Contains(unknown.Message, "Unknown storage scheme");
        Assert.AreEqual("connectionString",
            Assert.ThrowsExactly<ArgumentException>(() => sweep.SetStorage("results.txt", "s")).ParamName);
        Assert.AreEqual("connectionString",
            Assert.ThrowsExactly<ArgumentException>(() => sweep.SetStorage("Foo=1;Bar=2", "s")).ParamName);
        Assert.ThrowsExactly<ArgumentException>(() => sweep.SetStorage("sqlite:x.db", " "));
        // Optuna's URLs mean what they mean there: three slashes relative, four absolute.
        StringAssert.EndsWith(StorageLocation.Parse("sqlite:///rel/x.db", "/base").Describe(), "/base/rel/x.db");
        Assert.AreEqual("SQLite /abs/x.db", StorageLocation.Parse("sqlite:////abs/x.db", "/base").Describe());
        Assert.AreEqual("PostgreSQL h:6543/db",
            StorageLocation.Parse("postgresql://u:p%40ss@h:6543/db", null).Describe());
        Assert.AreEqual(StorageKind.PostgreSql, StorageLocation.Parse("Host=h;Database=d", null).Kind);

        using var db = StudyDatabase.Create("sqlite");
        await Worker(db.ConnectionString, "s", 1, Score).RunAsync();
        var mismatch = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            Worker(db.ConnectionString, "s", 2, Score).SetMetric(PeftMetric.F1).RunAsync());
        StringAssert.Contains(mismatch.Message, "studyName");
        var refit = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            Worker(db.ConnectionString, "t", 2, Score).SetTrainingTimeInSeconds(60).SetRefit().RunAsync());
        StringAssert.Contains(refit.Message, "SetStorage");
        var unreachable = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() =>
            Worker("Host=127.0.0.1;Port=1;Timeout=2", "s", 1, Score).RunAsync());
        StringAssert.Contains(unreachable.Message, "SetStorage");
    }
}
