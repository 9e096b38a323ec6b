-- Ops re-verification after a department outage, through the HTTP API: the API may not read the case
-- store's cases or events (0005_roles.sql), so it asks this function, which names the cases waiting for
-- offline registration because a department did not answer in a time window, and nothing else.
-- An `unavailable` outcome is the only one recorded as `<verifier>_verified` with a detail beginning
-- `unavailable`; answers (`mismatch`, `not_found`) are not an outage and are left alone.
CREATE FUNCTION offline_cases_of_outage(p_since timestamptz, p_until timestamptz, p_district text)
    RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT c.application_id FROM cases c
    WHERE c.status = 'awaiting_offline_registration'
      AND (p_district IS NULL OR c.district_code = p_district)
      AND EXISTS (
          SELECT 1 FROM case_events e
          WHERE e.application_id = c.application_id
            AND e.step LIKE '%\_verified' AND e.detail LIKE 'unavailable%'
            AND e.at >= p_since AND e.at < p_until
      )
    ORDER BY c.application_id
$$;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION offline_cases_of_outage(timestamptz, timestamptz, text) SET search_path = pg_catalog, %I, pg_temp',
        current_schema()
    );
END;
$$;
REVOKE ALL ON FUNCTION offline_cases_of_outage(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION offline_cases_of_outage(timestamptz, timestamptz, text) TO enroll_api;
