"""Reliability tests: crash safety under kill -9, idempotent uploads under chaos."""
