"""Helpers shared by the test suite (servers, generated fixtures)."""
