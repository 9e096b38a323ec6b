-- One row per case with its current status and key fields. Identity numbers are
-- never stored in clear: *_key columns hold a keyed hash (HMAC-SHA256) for look-ups.
CREATE TABLE cases (
    application_id    text PRIMARY KEY,
    workflow_id       text NOT NULL UNIQUE,
    status            text NOT NULL,
    -- Number of timeline entries the status reflects, so a late retry of an older
    -- snapshot never overwrites a newer one.
    progress          integer NOT NULL,
    routing_phase     text,
    channel           text NOT NULL,
    stage             text NOT NULL,
    registration_type text NOT NULL,
    district_code     text NOT NULL,
    school_year       integer NOT NULL,
    policy_version    text,
    student_key       text NOT NULL,
    guardian_keys     text[] NOT NULL,
    auto_filled_count integer NOT NULL DEFAULT 0,
    platform_synced   boolean NOT NULL DEFAULT false,
    submitted_at      timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX cases_by_district_and_status ON cases (district_code, status);
CREATE INDEX cases_by_student ON cases (student_key);

-- Every step of every case, in order, once: (application_id, seq) is the
-- position in the case's timeline, so a retried write adds nothing.
CREATE TABLE case_events (
    application_id text NOT NULL REFERENCES cases (application_id),
    seq            integer NOT NULL,
    at             timestamptz NOT NULL,
    step           text NOT NULL,
    actor          text NOT NULL,
    detail         text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application_id, seq)
);

-- The archive of a finished case: acceptance (受理), review (审核) and result (结果).
CREATE TABLE archive_documents (
    application_id text NOT NULL REFERENCES cases (application_id),
    kind           text NOT NULL CHECK (kind IN ('acceptance', 'review', 'result')),
    document       jsonb NOT NULL,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application_id, kind)
);

-- The event log and the archive are append-only.
CREATE FUNCTION refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER archive_documents_append_only BEFORE UPDATE OR DELETE ON archive_documents
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
