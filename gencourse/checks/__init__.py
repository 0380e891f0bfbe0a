"""Graded checks, one module per lab."""
