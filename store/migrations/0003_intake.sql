-- Who handed each application in, and a fingerprint of what they handed in, so the same
-- application handed in again is recognised and a different one under the same id is refused.
CREATE TABLE hand_ins (
    application_id text PRIMARY KEY,
    client_id      text NOT NULL,
    district_code  text NOT NULL,
    fingerprint    text NOT NULL,
    handed_in_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hand_ins_by_client ON hand_ins (client_id);

-- One child, one open application per school year, whatever the channel. The child is the
-- keyed hash of the identity number (never in clear); the row goes when the case ends other
-- than approved (withdrawn, rejected, not eligible, expired), so the family may apply again.
CREATE TABLE open_applications (
    student_key    text NOT NULL,
    school_year    integer NOT NULL,
    application_id text NOT NULL UNIQUE,
    client_id      text NOT NULL,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_key, school_year)
);

-- Request nonces seen from each calling system, kept for the signature's validity window, so a
-- replayed request is refused.
CREATE TABLE api_nonces (
    client_id text NOT NULL,
    nonce     text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, nonce)
);
CREATE INDEX api_nonces_by_age ON api_nonces (seen_at);
