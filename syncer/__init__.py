"""syncer: Cursor AI code tracking analytics → PostgreSQL."""

__version__ = "0.1.0"
