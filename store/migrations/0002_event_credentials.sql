-- The id of the signed token an actor's identity came from, for the audit trail.
ALTER TABLE case_events ADD COLUMN credential text;
