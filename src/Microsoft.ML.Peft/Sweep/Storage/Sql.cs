using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>Parameterised commands and transactions over either dialect, with the conversions both need.</summary>
internal static class Sql
{
    /// <summary>A command with parameters <c>@p0</c>, <c>@p1</c>, ... bound to <paramref name="values"/>.</summary>
    public static DbCommand Command(DbConnection c, DbTransaction? tx, string sql, params object?[] values)
    {
        var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        for (int i = 0; i < values.Length; i++)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = $"@p{i}";
            switch (values[i])
            {
                // SQLite stores NaN as NULL anyway; writing NULL keeps both dialects the same.
                case double d when double.IsNaN(d): p.Value = DBNull.Value; p.DbType = DbType.Double; break;
                case null: p.Value = DBNull.Value; p.DbType = DbType.String; break;
                case NullOf type: p.Value = DBNull.Value; p.DbType = type.DbType; break;
                case byte[] bytes: p.Value = bytes; p.DbType = DbType.Binary; break;
                default: p.Value = values[i]; break;
            }
            cmd.Parameters.Add(p);
        }
        return cmd;
    }

    public static int Execute(DbConnection c, DbTransaction? tx, string sql, params object?[] values)
    {
        using var cmd = Command(c, tx, sql, values);
        return cmd.ExecuteNonQuery();
    }

    public static object? Scalar(DbConnection c, DbTransaction? tx, string sql, params object?[] values)
    {
        using var cmd = Command(c, tx, sql, values);
        var v = cmd.ExecuteScalar();
        return v is DBNull ? null : v;
    }

    public static double Double(DbDataReader r, int i) => r.IsDBNull(i) ? double.NaN : Convert.ToDouble(r.GetValue(i));

    public static double? NullableDouble(DbDataReader r, int i) =>
        r.IsDBNull(i) ? null : Convert.ToDouble(r.GetValue(i));

    public static int? NullableInt(DbDataReader r, int i) => r.IsDBNull(i) ? null : Convert.ToInt32(r.GetValue(i));

    public static long Long(DbDataReader r, int i) => r.IsDBNull(i) ? 0 : Convert.ToInt64(r.GetValue(i));

    public static string? Text(DbDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    /// <summary>
    /// Whether an exception is a lock conflict worth retrying: SQLite busy/locked, PostgreSQL serialization failure or
    /// deadlock (both roll the transaction back whole).
    /// </summary>
    public static bool IsTransient(Exception e) => e switch
    {
        SqliteException s => s.SqliteErrorCode is 5 or 6,
        PostgresException p => p.SqlState is "40001" or "40P01",
        _ => false,
    };

    /// <summary>A typed NULL (a parameter whose type the server cannot infer from a bare NULL).</summary>
    public sealed record NullOf(DbType DbType);
}
