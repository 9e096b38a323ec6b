import pytest

# Asserts in the shared helpers report their operands as the tests' own asserts do.
pytest.register_assert_rewrite("tests.support")
