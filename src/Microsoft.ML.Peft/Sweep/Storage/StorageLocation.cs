using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>The two databases a study can live in.</summary>
internal enum StorageKind
{
    /// <summary>An embedded file (<c>Microsoft.Data.Sqlite</c>): workers on one machine.</summary>
    Sqlite,
    /// <summary>A server (<c>Npgsql</c>): workers on any machine that reaches it.</summary>
    PostgreSql,
}

/// <summary>
/// Where a study's rows live, parsed from <see cref="PeftSweep.SetStorage"/>'s string: <c>sqlite:path</c> (or
/// Optuna's <c>sqlite:///relative.db</c>, <c>sqlite:////absolute.db</c>), a path
/// ending in <c>.db</c>/<c>.sqlite</c>, or an ADO.NET <c>Data Source=...</c> string for SQLite;
/// <c>postgresql://user:pw@host:port/db</c> or an Npgsql <c>Host=...</c> string for PostgreSQL.
/// </summary>
internal sealed record StorageLocation(StorageKind Kind, string ConnectionString)
{
    /// <summary>The file every worker of a checkpoint-folder study shares (storage given as null).</summary>
    public const string DefaultFileName = "study.db";

    /// <summary>
    /// Parses <paramref name="storage"/>; a relative SQLite path is taken inside <paramref name="folder"/> when one is
    /// given. Throws <see cref="ArgumentException"/> naming <paramref name="option"/> for anything else.
    /// </summary>
    public static StorageLocation Parse(string? storage, string? folder, string option = "storage")
    {
        if (string.IsNullOrWhiteSpace(storage))
        {
            if (folder is null)
                throw new ArgumentException("Give a connection string, or call SetCheckpointFolder so that the study "
                    + $"is kept in the folder's {DefaultFileName} (SQLite).", option);
            return Sqlite(Path.Combine(folder, DefaultFileName));
        }
        string s = storage.Trim();
        if (s.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)
            || s.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase))
            return new(StorageKind.PostgreSql, FromUrl(s, option));
        if (s.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            string path = s["sqlite:".Length..];
            // Optuna's (SQLAlchemy's) URL form: sqlite:///relative.db and sqlite:////absolute/path.db.
            if (path.StartsWith("//", StringComparison.Ordinal))
                path = path.StartsWith("///", StringComparison.Ordinal) ? path[3..] : path[2..];
            if (path.Length == 0) throw new ArgumentException($"'{storage}' names no file after 'sqlite:'.", option);
            return Sqlite(Resolve(path, folder));
        }
        if (s.Contains('='))
        {
            var keys = new DbConnectionStringBuilder();
            try { keys.ConnectionString = s; }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"'{storage}' is not a valid connection string: {e.Message}", option, e);
            }
            if (keys.ContainsKey("Host") || keys.ContainsKey("Server"))
                return new(StorageKind.PostgreSql, CheckNpgsql(s, storage, option));
            if (keys.TryGetValue("Data Source", out var source) || keys.TryGetValue("DataSource", out source))
                return Sqlite(Resolve(Convert.ToString(source, System.Globalization.CultureInfo.InvariantCulture)!,
                    folder));
            throw new ArgumentException($"'{storage}' names neither a PostgreSQL Host nor a SQLite Data Source.",
                option);
        }
        if (s.Contains("://", StringComparison.Ordinal))
            throw new ArgumentException($"Unknown storage scheme in '{storage}': use postgresql://, sqlite: or a file "
                + "path ending in .db.", option);
        string ext = Path.GetExtension(s).ToLowerInvariant();
        if (ext is ".db" or ".sqlite" or ".sqlite3") return Sqlite(Resolve(s, folder));
        throw new ArgumentException($"Cannot tell which database '{storage}' is: use postgresql://..., a Host=... "
            + "string, sqlite:path or a path ending in .db.", option);

        static string Resolve(string path, string? folder) =>
            folder is not null && !Path.IsPathRooted(path) ? Path.Combine(folder, path) : Path.GetFullPath(path);
    }

    /// <summary>A new, closed connection.</summary>
    public DbConnection CreateConnection() => Kind == StorageKind.Sqlite
        ? new SqliteConnection(ConnectionString)
        : new NpgsqlConnection(ConnectionString);

    /// <summary>The location without a password, for logs and messages.</summary>
    public string Describe()
    {
        if (Kind == StorageKind.Sqlite)
            return $"SQLite {new SqliteConnectionStringBuilder(ConnectionString).DataSource}";
        var b = new NpgsqlConnectionStringBuilder(ConnectionString);
        return $"PostgreSQL {b.Host}:{b.Port}/{b.Database}";
    }

    private static StorageLocation Sqlite(string path)
    {
        // Not pooled: a pooled connection keeps the file open after the sweep, so the folder could not be removed.
        // The busy timeout lets a writer wait for another worker's transaction rather than fail.
        var b = new SqliteConnectionStringBuilder
        {
            DataSource = Path.GetFullPath(path), Pooling = false, DefaultTimeout = 120, ForeignKeys = true,
        };
        return new(StorageKind.Sqlite, b.ConnectionString);
    }

    private static string FromUrl(string url, string option)
    {
        Uri uri;
        try { uri = new Uri(url); }
        catch (UriFormatException e)
        {
            throw new ArgumentException($"'{url}' is not a valid PostgreSQL URL: {e.Message}", option, e);
        }
        var b = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host, Port = uri.IsDefaultPort || uri.Port < 0 ? 5432 : uri.Port,
        };
        string database = Uri.UnescapeDataString(uri.AbsolutePath.Trim('/'));
        if (database.Length > 0) b.Database = database;
        if (uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            b.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2) b.Password = Uri.UnescapeDataString(parts[1]);
        }
        return b.ConnectionString;
    }

    private static string CheckNpgsql(string s, string original, string option)
    {
        try { return new NpgsqlConnectionStringBuilder(s).ConnectionString; }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            throw new ArgumentException($"'{original}' is not a valid PostgreSQL connection string: {e.Message}",
                option, e);
        }
    }
}
