-- Who holds a case awaiting review, and until when (the case's own claim, written with its row), so the
-- queue shows it and filters on "mine" and "unassigned". A hold past `claimed_until` has lapsed.
ALTER TABLE cases ADD COLUMN claimed_by text, ADD COLUMN claimed_until timestamptz;
GRANT UPDATE (claimed_by, claimed_until) ON cases TO enroll_worker;
GRANT SELECT (claimed_by, claimed_until) ON cases TO enroll_console;
