-- What a district's review queue shows and filters on, written by the case with the rest of its row
-- (store/cases.py save_progress), so the console pages through thousands of cases with one indexed query.
ALTER TABLE cases
    ADD COLUMN status_since timestamptz,
    ADD COLUMN verification_outcomes jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN materials_count integer NOT NULL DEFAULT 0,
    ADD COLUMN reminded boolean NOT NULL DEFAULT false,
    ADD COLUMN escalated boolean NOT NULL DEFAULT false;
-- Rows written before this migration: the time of their last write is when they last changed.
UPDATE cases SET status_since = updated_at;
ALTER TABLE cases ALTER COLUMN status_since SET NOT NULL;
CREATE INDEX cases_district_queue ON cases (district_code, status, status_since, application_id);
CREATE INDEX cases_by_guardian ON cases USING gin (guardian_keys);

GRANT UPDATE (status_since, verification_outcomes, materials_count, reminded, escalated) ON cases TO enroll_worker;
GRANT SELECT (status_since, verification_outcomes, materials_count, reminded, escalated) ON cases TO enroll_console;

-- A reviewer searches their district's cases by a student's or guardian's identity number. The console
-- may not read the keyed hashes (0005_roles.sql), so it asks this function, which names the district's
-- cases of that person and nothing else.
CREATE FUNCTION district_cases_of_person(p_district text, p_key text) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT application_id FROM cases
    WHERE district_code = p_district AND (student_key = p_key OR guardian_keys @> ARRAY[p_key])
$$;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION district_cases_of_person(text, text) SET search_path = pg_catalog, %I, pg_temp',
        current_schema()
    );
END;
$$;
REVOKE ALL ON FUNCTION district_cases_of_person(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION district_cases_of_person(text, text) TO enroll_console;
