"""End-to-end tests against a real OpenID provider on loopback (see conftest.py)."""
