"""What the test modules share besides fixtures: the keys they use, the running stack, the product's
processes, the district policies, and the one way to wait. Fixtures stay in tests/conftest.py; test
modules import from here, never from conftest or from one another."""
