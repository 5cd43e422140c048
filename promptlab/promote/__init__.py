"""Promotion from dev to production: lock, parity checks, gates, registry, deployment."""
