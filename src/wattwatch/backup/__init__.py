"""Backups (create, verify, restore), moving an installation between stores, and retention."""
