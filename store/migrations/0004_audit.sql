-- The audit trail: who did what, on which case, from where, and how it ended. Append-only and
-- hash-chained by the database itself, so no writer can forge, reorder or quietly drop an event.
--
-- `detail` must never hold personal data (names, identity numbers, phones, addresses): the
-- writer (store/audit.py's `record`) is responsible, as for log lines. Actors are account
-- subjects (e.g. r-01), never names; `source` is the client's network address.
--
-- The chain: each event's hash is sha256(prev_hash || canonical text of its fields), its
-- prev_hash the hash of the event before it (32 zero bytes for the first event ever, or an
-- anchor's hash after a retention purge). The canonical text, which store/audit.py recomputes:
--   'audit-v1' then, for each of seq, at, actor, role, district, source, case_id, action,
--   outcome, detail: '|' followed by '-' when NULL, else the field's UTF-8 byte length, ':'
--   and the field, where seq is decimal, at is UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ and
--   detail is the jsonb's text form.
CREATE TABLE audit_events (
    -- Assigned by the trigger under the chain's lock, so seq order is chain order (a bigserial
    -- whose numbers are taken in commit order; a rolled-back insert leaves a gap, which is fine).
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now() CHECK (isfinite(at)),
    actor     text NOT NULL,
    role      text NOT NULL,
    district  text,
    source    text,
    case_id   text,
    action    text NOT NULL,
    outcome   text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);
CREATE SEQUENCE audit_events_seq AS bigint OWNED BY audit_events.seq;
CREATE INDEX audit_events_by_case ON audit_events (case_id, seq) WHERE case_id IS NOT NULL;
CREATE INDEX audit_events_by_actor ON audit_events (actor, at);

-- The chain's last link (its seq and hash), one row. Writers append after it under a row lock,
-- so even a writer in a REPEATABLE READ transaction cannot fork the chain (it gets a
-- serialization failure and retries); verification checks the last event against it, so
-- dropping events off the end is seen too.
CREATE TABLE audit_chain_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint,
    hash bytea NOT NULL
);
INSERT INTO audit_chain_head (seq, hash) VALUES (NULL, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- One row per retention purge: every event up to `seq` was deleted, and `hash` was the hash of
-- event `seq`, so the first event left links to it and the chain stays verifiable.
CREATE TABLE audit_anchors (
    seq            bigint PRIMARY KEY,
    hash           bytea NOT NULL,
    purged         bigint NOT NULL,
    retention_days integer NOT NULL,
    purged_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_canonical(e audit_events) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(
        'audit-v1' || string_agg('|' || CASE WHEN f IS NULL THEN '-' ELSE octet_length(f) || ':' || f END, '' ORDER BY n),
        'UTF8'
    )
    FROM unnest(ARRAY[
        e.seq::text,
        to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor, e.role, e.district, e.source, e.case_id, e.action, e.outcome, e.detail::text
    ]) WITH ORDINALITY AS fields (f, n)
$$;

-- SECURITY DEFINER: writers need no right on the head or the sequence, and cannot set seq,
-- prev_hash or hash themselves (whatever they send is replaced).
CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    last_hash bytea;
BEGIN
    -- One writer at a time appends to the chain, until its transaction ends.
    PERFORM pg_advisory_xact_lock(7311202401);
    SELECT h.hash INTO STRICT last_hash FROM audit_chain_head h FOR UPDATE;
    NEW.seq := nextval('audit_events_seq');
    NEW.at := coalesce(NEW.at, now());
    NEW.detail := coalesce(NEW.detail, '{}');
    NEW.prev_hash := last_hash;
    NEW.hash := sha256(last_hash || audit_canonical(NEW));
    UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION audit_chain() FROM PUBLIC;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

-- Events are never rewritten; they are deleted only by audit_purge (below), which runs as the
-- owner with enroll.audit_purge set for its own transaction.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events'
       AND current_setting('enroll.audit_purge', true) = 'on'
       AND current_user = (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID)
    THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_anchors_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Deletes the events older than `retention_days` (at least 183, about six months) from the start
-- of the chain, records an anchor, and appends an event saying so. Events are deleted as a prefix
-- of the chain: an old event after a newer one waits for it. Returns the anchor's seq (NULL when
-- nothing was old enough) and how many events went.
CREATE FUNCTION audit_purge(retention_days integer, OUT anchor_seq bigint, OUT purged bigint)
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    cutoff timestamptz;
    anchor_hash bytea;
BEGIN
    IF retention_days IS NULL OR retention_days < 183 THEN
        RAISE EXCEPTION 'audit retention must be at least 183 days, not %', retention_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    -- No event is appended while the prefix is chosen and deleted.
    PERFORM pg_advisory_xact_lock(7311202401);
    SELECT max(e.seq) INTO anchor_seq FROM audit_events e
    WHERE e.seq < coalesce((SELECT min(n.seq) FROM audit_events n WHERE n.at >= cutoff), 9223372036854775807);
    IF anchor_seq IS NULL THEN
        purged := 0;
        RETURN;
    END IF;
    SELECT e.hash INTO STRICT anchor_hash FROM audit_events e WHERE e.seq = anchor_seq;
    PERFORM set_config('enroll.audit_purge', 'on', true);
    DELETE FROM audit_events e WHERE e.seq <= anchor_seq;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('enroll.audit_purge', 'off', true);
    INSERT INTO audit_anchors (seq, hash, purged, retention_days) VALUES (anchor_seq, anchor_hash, purged, retention_days);
    INSERT INTO audit_events (actor, role, action, outcome, detail)
    VALUES (session_user, 'database', 'audit_purge', 'done',
            jsonb_build_object('anchor_seq', anchor_seq, 'purged', purged, 'retention_days', retention_days));
END;
$$;
REVOKE ALL ON FUNCTION audit_purge(integer) FROM PUBLIC;

-- Functions that run as the owner resolve names only in this schema, never in a caller's
-- temporary schema (where a caller could plant a table of the same name).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION audit_chain() SET search_path = pg_catalog, %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION audit_purge(integer) SET search_path = pg_catalog, %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION audit_refuse_change() SET search_path = pg_catalog, %I, pg_temp', current_schema());
END;
$$;
