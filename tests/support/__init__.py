"""Helpers for tests: served gateway processes, settings files."""
