namespace Microsoft.ML.Peft.Sweep.Storage;

/// <summary>
/// The tables of a study database (the same for both dialects but for the blob type). Every state change goes through
/// a transaction that holds the study's lock; the CHECK constraints make a row that contradicts its state impossible
/// to write, whatever a buggy or outdated worker tries.
/// </summary>
internal static class StudySchema
{
    public const string Waiting = "waiting";
    public const string Running = "running";
    public const string Complete = "complete";
    public const string Failed = "failed";
    public const string Pruned = "pruned";

    /// <summary>The statements that create the tables when missing, in order.</summary>
    public static IEnumerable<string> Create(StorageKind kind)
    {
        string blob = kind == StorageKind.Sqlite ? "BLOB" : "BYTEA";
        yield return """
            CREATE TABLE IF NOT EXISTS peft_studies (
                name TEXT PRIMARY KEY CHECK (length(name) > 0),
                metric TEXT NOT NULL,
                tuner TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """;
        yield return """
            CREATE TABLE IF NOT EXISTS peft_trials (
                study TEXT NOT NULL REFERENCES peft_studies (name) ON DELETE CASCADE,
                number INTEGER NOT NULL CHECK (number >= 0),
                parameters TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'complete', 'failed', 'pruned')),
                metric DOUBLE PRECISION,
                validation_loss DOUBLE PRECISION,
                trainable_parameters BIGINT NOT NULL DEFAULT 0 CHECK (trainable_parameters >= 0),
                duration_seconds DOUBLE PRECISION CHECK (duration_seconds >= 0),
                peak_working_set BIGINT NOT NULL DEFAULT 0,
                error TEXT,
                worker TEXT,
                started_at DOUBLE PRECISION,
                heartbeat_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                retry_of INTEGER CHECK (retry_of < number),
                retried_by INTEGER CHECK (retried_by > number),
                PRIMARY KEY (study, number),
                CHECK ((state = 'complete') = (metric IS NOT NULL)),
                CHECK (state <> 'running' OR (worker IS NOT NULL AND heartbeat_at IS NOT NULL
                    AND started_at IS NOT NULL)),
                CHECK ((state IN ('complete', 'failed', 'pruned')) = (finished_at IS NOT NULL)),
                CHECK (retried_by IS NULL OR state = 'failed')
            )
            """;
        yield return """
            CREATE TABLE IF NOT EXISTS peft_trial_epochs (
                study TEXT NOT NULL,
                number INTEGER NOT NULL,
                epoch INTEGER NOT NULL CHECK (epoch >= 1),
                loss DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (study, number, epoch),
                FOREIGN KEY (study, number) REFERENCES peft_trials (study, number) ON DELETE CASCADE
            )
            """;
        yield return $"""
            CREATE TABLE IF NOT EXISTS peft_best_models (
                study TEXT PRIMARY KEY REFERENCES peft_studies (name) ON DELETE CASCADE,
                number INTEGER NOT NULL,
                model {blob} NOT NULL,
                FOREIGN KEY (study, number) REFERENCES peft_trials (study, number)
            )
            """;
    }
}
