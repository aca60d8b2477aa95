"""Alembic migrations shipped inside the package; run by ``codirector init``."""
