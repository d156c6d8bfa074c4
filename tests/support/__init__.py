"""Helpers shared by tests: fleets and worlds, clocks, fakes. Never copied into a test file."""
