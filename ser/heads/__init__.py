"""Downstream heads (not built yet)."""
