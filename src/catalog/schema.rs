//! Schema migrations. `PRAGMA user_version` records how many have run; each entry of
//! `MIGRATIONS` runs once, in order, inside a transaction.

pub const MIGRATIONS: &[&str] = &[
    // 1: the namespace (directories, artifacts, symlinks), versions and blobs.
    r#"
    CREATE TABLE dirs (
        path      TEXT PRIMARY KEY,
        mode      INTEGER NOT NULL,
        uid       INTEGER NOT NULL,
        gid       INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE artifacts (
        rowid          INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        path           TEXT NOT NULL,
        trace_id       TEXT NOT NULL,
        step_id        TEXT NOT NULL,
        live           INTEGER NOT NULL,
        mode           INTEGER NOT NULL,
        uid            INTEGER NOT NULL,
        gid            INTEGER NOT NULL,
        mtime_ns       INTEGER NOT NULL,
        owner          TEXT NOT NULL,
        created_at_ns  INTEGER NOT NULL,
        current_version INTEGER NOT NULL
    );
    CREATE INDEX artifacts_path ON artifacts(path, live);
    CREATE INDEX artifacts_trace_step ON artifacts(trace_id, step_id);

    CREATE TABLE versions (
        artifact_rowid INTEGER NOT NULL REFERENCES artifacts(rowid),
        version        INTEGER NOT NULL,
        size_bytes     INTEGER NOT NULL,
        sha256         TEXT NOT NULL,
        created_at_ns  INTEGER NOT NULL,
        created_by     TEXT NOT NULL,
        path           TEXT NOT NULL,
        status         TEXT NOT NULL,
        manifest       TEXT NOT NULL,
        PRIMARY KEY (artifact_rowid, version)
    ) WITHOUT ROWID;
    CREATE INDEX versions_status ON versions(status) WHERE status != 'completed';
    CREATE INDEX versions_sha256 ON versions(sha256);
    CREATE INDEX versions_created ON versions(created_at_ns);

    CREATE TABLE symlinks (
        path      TEXT PRIMARY KEY,
        target    TEXT NOT NULL,
        uid       INTEGER NOT NULL,
        gid       INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: manifest metadata per artifact, the event log, and indexes for `query`.
    r#"
    ALTER TABLE artifacts ADD COLUMN artifact_type TEXT NOT NULL DEFAULT 'artifact';
    ALTER TABLE artifacts ADD COLUMN content_type TEXT NOT NULL DEFAULT 'application/octet-stream';
    ALTER TABLE artifacts ADD COLUMN visibility TEXT NOT NULL DEFAULT 'trace';
    ALTER TABLE artifacts ADD COLUMN retention TEXT NOT NULL DEFAULT 'forever';
    ALTER TABLE artifacts ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX artifacts_type ON artifacts(artifact_type);

    CREATE INDEX versions_created_by ON versions(created_by, created_at_ns);

    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ns        INTEGER NOT NULL,
        action       TEXT NOT NULL,
        artifact_id  TEXT NOT NULL,
        version      INTEGER,
        body         TEXT NOT NULL
    );
    CREATE INDEX events_artifact ON events(artifact_id, seq);
    "#,
    // 3: indexes for the views (`.at` walks events by time) and `query --status`
    // (the partial index of migration 1 cannot serve a bound status value).
    r#"
    CREATE INDEX IF NOT EXISTS events_at ON events(at_ns);
    CREATE INDEX IF NOT EXISTS versions_status_time ON versions(status, created_at_ns);
    DROP INDEX IF EXISTS artifacts_owner;
    "#,
    // 4: traces' owners and participant lists (access control).
    r#"
    CREATE TABLE traces (
        name          TEXT PRIMARY KEY,
        owner         TEXT NOT NULL,
        participants  TEXT
    ) WITHOUT ROWID;
    "#,
    // 5: per-chunk SHA-256 of uploaded blobs, for ranged, checked reads from
    // the backend (32 bytes per chunk, concatenated).
    r#"
    CREATE TABLE blob_chunks (
        sha256      TEXT PRIMARY KEY,
        chunk_size  INTEGER NOT NULL,
        hashes      BLOB NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: backend objects GC still has to delete ("blob:<sha256>",
    // "sidecar:<artifact id>:<version>"), written with the expiry itself so
    // that a crash or a failed deletion never leaves one behind for good.
    r#"
    CREATE TABLE gc_pending (
        key  TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    "#,
];
