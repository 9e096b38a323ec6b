-- The review console's server-side sessions (console/sessions.py, store/console_sessions.py).
--
-- The browser's cookie holds only a random session id; a row is found by the SHA-256 of it, so
-- whoever reads this table cannot make a cookie that signs in. A row holds the person's tokens
-- from the identity provider while the session lasts; ending it (sign-out, expiry, the provider
-- saying the person is no longer active) wipes them and keeps the row as a record of the session.
CREATE TABLE console_sessions (
    id_hash        bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    subject        text NOT NULL,
    role           text NOT NULL,
    district       text,
    -- The provider's session id (the tokens' `sid`), to match this row with the provider's log.
    provider_sid   text NOT NULL,
    access_token   text,
    refresh_token  text,
    id_token       text,
    access_expires timestamptz NOT NULL,
    created        timestamptz NOT NULL,
    -- The sooner of created + the absolute lifetime and the last request + the idle timeout.
    expires        timestamptz NOT NULL,
    -- When the provider last confirmed the tokens active (introspection or refresh).
    last_checked   timestamptz NOT NULL,
    ended_at       timestamptz,
    end_reason     text,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (ended_at IS NULL OR (access_token IS NULL AND refresh_token IS NULL AND id_token IS NULL))
);
-- Sessions that lapsed without their person coming back are ended (and audited) by the next sign-in.
CREATE INDEX console_sessions_open_by_expiry ON console_sessions (expires) WHERE ended_at IS NULL;

-- Sign-ins on their way through the provider: the authorization request's state, nonce and PKCE
-- verifier (Authlib's), keyed by the SHA-256 of the random id in the browser's sign-in cookie, for
-- ten minutes. Taken (deleted) by the callback, so each is used once.
CREATE TABLE console_sign_ins (
    id_hash bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    pending jsonb NOT NULL CHECK (jsonb_typeof(pending) = 'object'),
    expires timestamptz NOT NULL
);
CREATE INDEX console_sign_ins_by_expiry ON console_sign_ins (expires);

-- The applicant's result lookup asks whether the identity number a family typed is the case's
-- student's, by the keyed hash the case row keeps. The console may not read `student_key`
-- (0005_roles.sql), so it asks this function, which answers yes or no for one case and nothing else.
CREATE FUNCTION case_student_matches(p_application_id text, p_student_key text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT EXISTS (SELECT FROM cases WHERE application_id = p_application_id AND student_key = p_student_key)
$$;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION case_student_matches(text, text) SET search_path = pg_catalog, %I, pg_temp', current_schema()
    );
END;
$$;
REVOKE ALL ON FUNCTION case_student_matches(text, text) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE ON console_sessions TO enroll_console;
GRANT SELECT, INSERT, DELETE ON console_sign_ins TO enroll_console;
GRANT EXECUTE ON FUNCTION case_student_matches(text, text) TO enroll_console;
