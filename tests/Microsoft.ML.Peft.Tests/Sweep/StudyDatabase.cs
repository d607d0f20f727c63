using Microsoft.ML.Peft.Tests.BaseModels;
using Npgsql;

namespace Microsoft.ML.Peft.Tests.Sweep;

/// <summary>
/// A throw-away database for a storage test: a SQLite file in a temp folder, or a PostgreSQL database created on the
/// server named by <c>PEFT_TEST_POSTGRES</c> (eng/postgres.sh starts one and sets it) and dropped afterwards.
/// </summary>
internal sealed class StudyDatabase : IDisposable
{
    public const string Variable = "PEFT_TEST_POSTGRES";
    private readonly EmbeddedOnnx.TempFolder? _folder;
    private readonly string? _admin;
    private readonly string? _name;

    private StudyDatabase(string connectionString, EmbeddedOnnx.TempFolder? folder, string? admin, string? name)
    {
        ConnectionString = connectionString;
        _folder = folder;
        _admin = admin;
        _name = name;
    }

    /// <summary>What <c>SetStorage</c> is given.</summary>
    public string ConnectionString { get; }

    /// <summary>
    /// A new database of <paramref name="backend"/> ("sqlite" or "postgres"). Without a PostgreSQL server the test
    /// fails under CI (CI=true), where eng/postgres.sh must have provided one, and is inconclusive elsewhere: it must
    /// never count as passed.
    /// </summary>
    public static StudyDatabase Create(string backend)
    {
        if (backend == "sqlite")
        {
            var folder = new EmbeddedOnnx.TempFolder();
            return new StudyDatabase($"sqlite:{Path.Combine(folder.Path, "study.db")}", folder, null, null);
        }
        string? admin = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(admin))
        {
            string message = $"{Variable} is not set: this test needs a PostgreSQL server. Run "
                + "'eval \"$(bash eng/postgres.sh start)\"' (or eng/test.sh, which does) first.";
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                Assert.Fail(message);
            Assert.Inconclusive(message);
        }
        string name = "peft_test_" + Guid.NewGuid().ToString("N")[..12];
        using (var c = new NpgsqlConnection(admin))
        {
            try { c.Open(); }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                Assert.Fail($"{Variable} names a PostgreSQL server that does not answer ({e.Message}).");
            }
            using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", c);
            cmd.ExecuteNonQuery();
        }
        var b = new NpgsqlConnectionStringBuilder(admin) { Database = name };
        return new StudyDatabase(b.ConnectionString, null, admin, name);
    }

    public void Dispose()
    {
        _folder?.Dispose();
        if (_admin is null) return;
        NpgsqlConnection.ClearAllPools();
        using var c = new NpgsqlConnection(_admin);
        c.Open();
        using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_name} WITH (FORCE)", c);
        cmd.ExecuteNonQuery();
    }
}
