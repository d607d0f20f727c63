using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using static Microsoft.ML.Peft.Sweep.Storage.StudySchema;

namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>What a worker asking for a trial gets.</summary>
/// <param name="Number">The claimed trial; null when there is none to run now.</param>
/// <param name="Parameters">Its point.</param>
/// <param name="OthersRunning">Trials other workers are running: while any runs, a worker with nothing to claim waits,
/// since one may fail and be retried, and the study is not over until they end.</param>
/// <param name="Reason">Why nothing was claimed (for the log).</param>
internal sealed record Claim(int? Number, TrialParameters? Parameters, int OthersRunning, string Reason);

/// <summary>
/// One study's rows in a SQLite file or a PostgreSQL database: every worker of the study opens its own. Each change
/// runs in a transaction that first takes the study's lock (SQLite: <c>BEGIN IMMEDIATE</c>, which holds the file's
/// write lock; PostgreSQL: <c>SELECT ... FOR UPDATE</c> on the study's row), so claims, lost-trial sweeps and results
/// of concurrent workers are applied one at a time; lock conflicts are retried.
/// </summary>
internal sealed class StudyStore(StorageLocation location, string study)
{
    public StorageLocation Location { get; } = location;

    public string Study { get; } = study;

    /// <summary>Seconds since the Unix epoch on this machine's clock (heartbeats compare these across workers).
    /// </summary>
    public static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>
    /// Creates the tables and the study when missing; returns the study's creation time. A study that exists with
    /// another metric or tuner is refused: its rows would mean something else to this sweep.
    /// </summary>
    public double Open(string metric, string tuner)
    {
        using var c = Connect();
        if (Location.Kind == StorageKind.Sqlite)
            // WAL lets readers (a leaderboard being watched) run while a worker writes.
            Sql.Execute(c, null, "PRAGMA journal_mode=WAL");
        return Retry(() =>
        {
            using var tx = Begin(c);
            // Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog: one worker at a time.
            if (Location.Kind == StorageKind.PostgreSql)
                Sql.Execute(c, tx, "SELECT pg_advisory_xact_lock(7236051)");
            foreach (var ddl in StudySchema.Create(Location.Kind)) Sql.Execute(c, tx, ddl);
            Sql.Execute(c, tx, "INSERT INTO peft_studies (name, metric, tuner, created_at) VALUES (@p0, @p1, @p2, @p3) "
                + "ON CONFLICT (name) DO NOTHING", Study, metric, tuner, Now());
            using var cmd = Sql.Command(c, tx, "SELECT metric, tuner, created_at FROM peft_studies WHERE name = @p0",
                Study);
            using var r = cmd.ExecuteReader();
            r.Read();
            string m = r.GetString(0), t = r.GetString(1);
            double created = Sql.Double(r, 2);
            r.Close();
            tx.Commit();
            if (m != metric || t != tuner)
                throw new InvalidOperationException($"Study '{Study}' in {Location.Describe()} was created with metric "
                    + $"{m} and tuner {t}, and this sweep sets {metric} and {tuner}: give SetStorage another "
                    + "studyName, or the study's metric and tuner.");
            return created;
        });
    }

    /// <summary>
    /// In one locked transaction: marks running trials whose heartbeat is older than <paramref name="timeout"/> failed
    /// (and queues a retry of each when <paramref name="retry"/>), then claims the lowest waiting trial, or asks
    /// <paramref name="propose"/> (given every row) for a new one when the study's budget allows.
    /// </summary>
    public Claim Claim(string worker, TimeSpan timeout, bool retry, int? maxTrials, double? deadline,
        Func<IReadOnlyList<StoredTrial>, TrialParameters?> propose) => Transaction((c, tx) =>
    {
        double now = Now();
        var rows = Load(c, tx);
        foreach (var lost in rows.Where(t => t.State == Running && t.HeartbeatAt < now - timeout.TotalSeconds))
        {
            int? next = retry ? rows.Max(t => t.Number) + 1 : null;
            Sql.Execute(c, tx, "UPDATE peft_trials SET state = 'failed', finished_at = @p0, error = @p1, "
                + "retried_by = @p2 WHERE study = @p3 AND number = @p4 AND state = 'running'", now,
                $"Worker {lost.Worker} stopped sending heartbeats (none for {timeout.TotalSeconds:F0} s)"
                + (retry ? $"; retried as trial {next}." : "."),
                next is null ? new Sql.NullOf(DbType.Int32) : next, Study, lost.Number);
            if (next is { } n)
            {
                Sql.Execute(c, tx, "INSERT INTO peft_trials (study, number, parameters, state, retry_of) "
                    + "VALUES (@p0, @p1, @p2, 'waiting', @p3)", Study, n, lost.Parameters.ToJson(), lost.Number);
                rows = Load(c, tx);
            }
            else rows = Load(c, tx);
        }
        int othersRunning = rows.Count(t => t.State == Running);
        if (deadline is { } d && now >= d) return new Claim(null, null, othersRunning, "the study's time is up");
        if (rows.Where(t => t.State == Waiting).MinBy(t => t.Number) is { } waiting)
        {
            Sql.Execute(c, tx, "UPDATE peft_trials SET state = 'running', worker = @p0, started_at = @p1, "
                + "heartbeat_at = @p1, error = NULL WHERE study = @p2 AND number = @p3 AND state = 'waiting'",
                worker, now, Study, waiting.Number);
            return new Claim(waiting.Number, waiting.Parameters, othersRunning, "");
        }
        // A lost trial that was retried is counted once, by its retry.
        int counted = rows.Count(t => t.RetriedBy is null);
        if (maxTrials is { } max && counted >= max)
            return new Claim(null, null, othersRunning, $"the study has its {max} trials");
        if (propose(rows) is not { } p)
            return new Claim(null, null, othersRunning, "the tuner has nothing more to try");
        int number = rows.Count == 0 ? 0 : rows.Max(t => t.Number) + 1;
        Sql.Execute(c, tx, "INSERT INTO peft_trials (study, number, parameters, state, worker, started_at, "
            + "heartbeat_at) VALUES (@p0, @p1, @p2, 'running', @p3, @p4, @p4)", Study, number, p.ToJson(), worker, now);
        return new Claim(number, p, othersRunning, "");
    });

    /// <summary>Refreshes the heartbeat of a trial this worker runs; false when it is no longer this worker's.
    /// </summary>
    public bool Beat(int number, string worker)
    {
        using var c = Connect();
        return Retry(() => Sql.Execute(c, null, "UPDATE peft_trials SET heartbeat_at = @p0 WHERE study = @p1 "
            + "AND number = @p2 AND state = 'running' AND worker = @p3", Now(), Study, number, worker) == 1);
    }

    /// <summary>
    /// Records a trial's loss after an epoch and returns every loss recorded at that epoch in the study (this one
    /// included): successive halving's rung across all workers.
    /// </summary>
    public IReadOnlyList<double> ReportEpoch(int number, int epoch, double loss)
    {
        using var c = Connect();
        return Retry(() =>
        {
            Sql.Execute(c, null, "INSERT INTO peft_trial_epochs (study, number, epoch, loss) "
                + "VALUES (@p0, @p1, @p2, @p3) ON CONFLICT (study, number, epoch) DO UPDATE SET loss = excluded.loss",
                Study, number, epoch, double.IsFinite(loss) ? loss : double.MaxValue);
            using var cmd = Sql.Command(c, null, "SELECT loss FROM peft_trial_epochs WHERE study = @p0 AND epoch = @p1",
                Study, epoch);
            using var r = cmd.ExecuteReader();
            var all = new List<double>();
            while (r.Read()) all.Add(Sql.Double(r, 0));
            return (IReadOnlyList<double>)all;
        });
    }

    /// <summary>
    /// Writes a trial's result if the trial is still this worker's (another worker may have declared it lost); a
    /// cancelled trial goes back to waiting. When <paramref name="model"/> is given and the result beats every
    /// complete trial by <paramref name="isBetter"/>, the model becomes the study's best in the same transaction.
    /// Returns false when the row was no longer this worker's.
    /// </summary>
    public bool Finish(TrialResult result, string worker, Func<byte[]>? model,
        Func<TrialResult, TrialResult, bool> isBetter) => Transaction((c, tx) =>
    {
        string state = StoredTrial.StateOf(result.Status);
        bool finished = state != Waiting;
        int updated = Sql.Execute(c, tx, "UPDATE peft_trials SET state = @p0, metric = @p1, validation_loss = @p2, "
            + "trainable_parameters = @p3, duration_seconds = @p4, peak_working_set = @p5, error = @p6, "
            + "finished_at = @p7, worker = CASE WHEN @p8 = 1 THEN worker ELSE NULL END "
            + "WHERE study = @p9 AND number = @p10 AND state = 'running' AND worker = @p11",
            state, state == Complete ? result.Metric : double.NaN, result.ValidationLoss, result.TrainableParameters,
            result.Duration.TotalSeconds, result.PeakWorkingSetBytes, result.Error,
            finished ? Now() : new Sql.NullOf(DbType.Double), finished ? 1 : 0, Study, result.Id, worker);
        if (updated == 0) return false;
        for (int e = 0; e < result.EpochLosses.Count; e++)
            if (!double.IsNaN(result.EpochLosses[e]))
                Sql.Execute(c, tx, "INSERT INTO peft_trial_epochs (study, number, epoch, loss) VALUES (@p0, @p1, @p2, "
                    + "@p3) ON CONFLICT (study, number, epoch) DO UPDATE SET loss = excluded.loss", Study, result.Id,
                    e + 1, double.IsFinite(result.EpochLosses[e]) ? result.EpochLosses[e] : double.MaxValue);
        if (model is not null && state == Complete
            && Load(c, tx).Where(t => t.State == Complete && t.Number != result.Id)
                .All(t => isBetter(result, t.ToResult())))
        {
            Sql.Execute(c, tx, "DELETE FROM peft_best_models WHERE study = @p0", Study);
            Sql.Execute(c, tx, "INSERT INTO peft_best_models (study, number, model) VALUES (@p0, @p1, @p2)", Study,
                result.Id, model());
        }
        return true;
    });

    /// <summary>Every trial of the study in number order (read without the lock: a snapshot for the leaderboard).
    /// </summary>
    public List<StoredTrial> LoadTrials()
    {
        using var c = Connect();
        return Retry(() => Load(c, null));
    }

    /// <summary>The study's best model as saved bytes and its trial; null when no trial stored one.</summary>
    public (int Number, byte[] Model)? LoadBestModel()
    {
        using var c = Connect();
        return Retry<(int, byte[])?>(() =>
        {
            using var cmd = Sql.Command(c, null, "SELECT number, model FROM peft_best_models WHERE study = @p0", Study);
            using var r = cmd.ExecuteReader();
            return r.Read() ? (Convert.ToInt32(r.GetValue(0)), (byte[])r.GetValue(1)) : null;
        });
    }

    /// <summary>The metric the study was created with.</summary>
    public PeftMetric LoadMetric()
    {
        using var c = Connect();
        return Enum.Parse<PeftMetric>((string)Sql.Scalar(c, null, "SELECT metric FROM peft_studies WHERE name = @p0",
            Study)!);
    }

    /// <summary>Whether the study exists (without creating anything).</summary>
    public bool Exists()
    {
        using var c = Connect();
        try { return Sql.Scalar(c, null, "SELECT 1 FROM peft_studies WHERE name = @p0", Study) is not null; }
        catch (DbException) { return false; } // no tables yet
    }

    private List<StoredTrial> Load(DbConnection c, DbTransaction? tx)
    {
        var losses = new Dictionary<int, List<double>>();
        using (var cmd = Sql.Command(c, tx, "SELECT number, epoch, loss FROM peft_trial_epochs WHERE study = @p0 "
            + "ORDER BY number, epoch", Study))
        using (var r = cmd.ExecuteReader())
            while (r.Read())
            {
                int n = Convert.ToInt32(r.GetValue(0)), epoch = Convert.ToInt32(r.GetValue(1));
                if (!losses.TryGetValue(n, out var l)) losses[n] = l = [];
                while (l.Count < epoch) l.Add(double.NaN);
                double loss = Sql.Double(r, 2);
                l[epoch - 1] = loss == double.MaxValue ? double.PositiveInfinity : loss;
            }
        var rows = new List<StoredTrial>();
        using (var cmd = Sql.Command(c, tx, "SELECT number, parameters, state, metric, validation_loss, "
            + "trainable_parameters, duration_seconds, peak_working_set, error, worker, heartbeat_at, retry_of, "
            + "retried_by FROM peft_trials WHERE study = @p0 ORDER BY number", Study))
        using (var r = cmd.ExecuteReader())
            while (r.Read())
            {
                int n = Convert.ToInt32(r.GetValue(0));
                rows.Add(new StoredTrial
                {
                    Number = n, Parameters = TrialParameters.FromJson(r.GetString(1)), State = r.GetString(2),
                    Metric = Sql.Double(r, 3), ValidationLoss = Sql.Double(r, 4), TrainableParameters = Sql.Long(r, 5),
                    DurationSeconds = r.IsDBNull(6) ? 0 : Sql.Double(r, 6), PeakWorkingSet = Sql.Long(r, 7),
                    Error = Sql.Text(r, 8), Worker = Sql.Text(r, 9), HeartbeatAt = Sql.NullableDouble(r, 10),
                    RetryOf = Sql.NullableInt(r, 11), RetriedBy = Sql.NullableInt(r, 12),
                    EpochLosses = losses.TryGetValue(n, out var l) ? l : [],
                });
            }
        return rows;
    }

    private DbConnection Connect()
    {
        var c = Location.CreateConnection();
        if (c is SqliteConnection file)
            Directory.CreateDirectory(Path.GetDirectoryName(file.DataSource) is { Length: > 0 } d ? d : ".");
        try { c.Open(); }
        catch (Exception e) when (e is DbException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            c.Dispose();
            throw new InvalidOperationException($"Cannot open the sweep storage ({Location.Describe()}) given to "
                + $"SetStorage: {e.Message}", e);
        }
        return c;
    }

    /// <summary>
    /// SQLite: <c>BEGIN IMMEDIATE</c> (serializable, not deferred), which takes the write lock before the first read,
    /// so two claims never read the same rows and then race to write. PostgreSQL: read committed, with the study's
    /// row locked by <see cref="Transaction{T}"/>.
    /// </summary>
    internal static DbTransaction Begin(DbConnection c) => c is SqliteConnection sqlite
        ? sqlite.BeginTransaction(IsolationLevel.Serializable, deferred: false)
        : c.BeginTransaction(IsolationLevel.ReadCommitted);

    private T Transaction<T>(Func<DbConnection, DbTransaction, T> body)
    {
        using var c = Connect();
        return Retry(() =>
        {
            using var tx = Begin(c);
            if (Location.Kind == StorageKind.PostgreSql
                && Sql.Scalar(c, tx, "SELECT name FROM peft_studies WHERE name = @p0 FOR UPDATE", Study) is null)
                throw new InvalidOperationException($"Study '{Study}' does not exist in {Location.Describe()}.");
            var result = body(c, tx);
            tx.Commit();
            return result;
        });
    }

    private static T Retry<T>(Func<T> body)
    {
        for (int attempt = 1; ; attempt++)
        {
            try { return body(); }
            catch (Exception e) when (attempt < 20 && Sql.IsTransient(e))
            {
                Thread.Sleep(Random.Shared.Next(20, 100 * Math.Min(attempt, 10)));
            }
        }
    }
}
