"""The `enroll` command line: submit applications and act on cases."""
