"""PostgreSQL: engines, schema, staging COPY, upserts, the mark, the run log."""
