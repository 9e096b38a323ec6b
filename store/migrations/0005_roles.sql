-- Least-privilege roles, one group role per service (docs/database-roles.md has the table, store/roles.py
-- makes LOGIN members of them). The migrating role owns every table; the services only get what
-- their statements need. Roles belong to the whole server, so they are created only when missing
-- (another database on the same server may have made them already).
--
-- A new table needs its own GRANTs in its migration: nothing here applies to tables made later.
DO $$
DECLARE
    group_role text;
BEGIN
    FOREACH group_role IN ARRAY ARRAY['enroll_worker', 'enroll_console', 'enroll_api', 'enroll_auditor'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = group_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', group_role);
            EXCEPTION
                WHEN duplicate_object THEN NULL;  -- made meanwhile by a migration of another database
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist and % may not create roles', group_role, current_user
                        USING HINT = 'migrate as a role with CREATEROLE, or have an administrator create the '
                                     'NOLOGIN roles enroll_worker, enroll_console, enroll_api, enroll_auditor once';
            END;
        END IF;
    END LOOP;
    -- Only the owner makes tables here (already so from PostgreSQL 15); the services use the schema.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO enroll_worker, enroll_console, enroll_api, enroll_auditor',
                   current_schema());
END;
$$;

-- Every service's pool checks that the schema is current before it starts (store/database.py).
GRANT SELECT ON schema_migrations TO enroll_worker, enroll_console, enroll_api, enroll_auditor;

-- Workers (activities/archive.py, workers/metrics.py): store.cases.save_progress and archive, and the
-- backlog gauge. They update a case's progress columns only, never who the case is about.
GRANT SELECT, INSERT ON cases TO enroll_worker;
GRANT UPDATE (status, progress, routing_phase, policy_version, auto_filled_count, platform_synced, updated_at)
    ON cases TO enroll_worker;
-- SELECT: `ON CONFLICT (key) DO NOTHING` reads the key columns.
GRANT SELECT, INSERT ON case_events, archive_documents TO enroll_worker;
-- A case that ends without a place frees the child's open application.
GRANT SELECT (application_id), DELETE ON open_applications TO enroll_worker;

-- The review console (store/console_reads.py): the case row without the identity keys, the
-- timeline's steps, which archive documents were filed (not their content, which names people).
GRANT SELECT (application_id, workflow_id, status, progress, routing_phase, channel, stage, registration_type,
              district_code, school_year, policy_version, auto_filled_count, platform_synced, submitted_at,
              updated_at)
    ON cases TO enroll_console;
GRANT SELECT (application_id, seq, at, step, actor, recorded_at) ON case_events TO enroll_console;
GRANT SELECT (application_id, kind, archived_at) ON archive_documents TO enroll_console;
-- console_sessions (added later by its own migration) needs its grants there:
--   GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO enroll_console;

-- The HTTP API and `enroll submit` (store/intake.py via starter/hand_in.py and api/callers.py):
-- hand-in records, the child's open application, request nonces.
GRANT SELECT, INSERT ON hand_ins TO enroll_api;
GRANT SELECT, INSERT, DELETE ON open_applications TO enroll_api;
GRANT SELECT, INSERT, DELETE ON api_nonces TO enroll_api;

-- The console and the API append to the audit trail; the chain's columns (seq, at, prev_hash,
-- hash) are the database's to set, and neither service reads the trail back.
GRANT INSERT (actor, role, district, source, case_id, action, outcome, detail)
    ON audit_events TO enroll_console, enroll_api;

-- Auditors read the trail and verify its chain; nothing else.
GRANT SELECT ON audit_events, audit_anchors, audit_chain_head TO enroll_auditor;

-- The event log and the archive take no TRUNCATE from anyone but their owner (who may empty a
-- test or fresh store; it could disable the triggers anyway). UPDATE and DELETE are refused to
-- everyone by 0001's triggers, and no service is granted any of the three.
CREATE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.pg_has_role(
        current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'USAGE'
    ) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only (TRUNCATE refused)', TG_TABLE_NAME;
END;
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION refuse_truncate() SET search_path = pg_catalog, %I, pg_temp', current_schema());
END;
$$;
CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER archive_documents_no_truncate BEFORE TRUNCATE ON archive_documents
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
