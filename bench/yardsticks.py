"""What PostgreSQL itself does with the same CSV: the yardsticks syncer's loads are held to.

Each is timed as one psql script (after a CHECKPOINT) in the benchmark's own database, into
tables made for the measurement and dropped afterwards:

- commits, `\\copy` into a table with only the primary key ("keyed");
- commits, `\\copy` into a table `LIKE ai_commits INCLUDING ALL` ("same schema": the key, the
  BI indexes, the defaults);
- changes, `\\copy` into a table keyed on change_id with metadata_json as jsonb ("keyed");
- changes with their files, the best pure-SQL load into tables `LIKE ai_code_changes` and
  `LIKE ai_code_change_files` `INCLUDING ALL` with the foreign key: `\\copy` into a typed
  staging table, then `INSERT … SELECT` of the changes and of the files through
  `jsonb_array_elements … WITH ORDINALITY`, in one transaction;
- an unchanged reload done by the server alone, into the tables syncer has just loaded:
  `\\copy` into a typed staging table, then the upsert of only the rows that differ from the
  stored ones (`INSERT … SELECT … WHERE NOT EXISTS (the same stored row) ON CONFLICT DO
  UPDATE`, whatever plan the server picks). For changes "the same" means the same scalar
  columns and the same metadata text (its md5 against `metadata_digest`): comparing the
  file rows themselves would need the JSON parsed, which is what a reload must avoid.
"""

from __future__ import annotations

from pathlib import Path

from harness import count, psql, timed_psql


def _copy_rate(db: str, table: str, create: str, csv_file: Path, header: str) -> float:
    """Rows/s of `\\copy` of a CSV into `table`, made by `create` and dropped afterwards."""
    psql(db, "-c", create)
    try:
        seconds = timed_psql(db, f"\\copy {table}({header}) FROM '{csv_file}' CSV HEADER\n")
        rows = count(db, table)
    finally:
        psql(db, "-c", f"DROP TABLE {table}")
    return rows / seconds


def commits_copy(db: str, csv_file: Path, header: str, *, same_schema: bool) -> float:
    """Rows/s of `\\copy` of the commits CSV into an empty keyed or same-schema table."""
    like = "INCLUDING ALL" if same_schema else "INCLUDING DEFAULTS, PRIMARY KEY (commit_hash)"
    create = f"CREATE TABLE y_commits (LIKE ai_commits {like})"
    return _copy_rate(db, "y_commits", create, csv_file, header)


def _typed_changes(table: str, header: str, extra: str = "", metadata: str = "jsonb") -> str:
    types = {
        "total_lines_added": "bigint",
        "total_lines_deleted": "bigint",
        "created_at": "timestamptz NOT NULL",
        "metadata_json": metadata,
    }
    columns = ", ".join(f"{name} {types.get(name, 'text')}" for name in header.split(","))
    return f"CREATE TABLE {table} ({columns}{extra})"


def changes_copy(db: str, csv_file: Path, header: str) -> float:
    """Change rows/s of `\\copy` of the changes CSV into a table keyed on change_id."""
    create = _typed_changes("y_keyed", header, ", PRIMARY KEY (change_id)")
    return _copy_rate(db, "y_keyed", create, csv_file, header)


_FILES = (
    "INSERT INTO y_files (change_id, file_index, file_name, file_extension, lines_added, "
    "lines_deleted) SELECT s.change_id, e.i - 1, e.v->>'fileName', e.v->>'fileExtension', "
    "(e.v->>'linesAdded')::bigint, (e.v->>'linesDeleted')::bigint FROM y_stage s "
    "CROSS JOIN LATERAL jsonb_array_elements(s.metadata_json) WITH ORDINALITY AS e(v, i);\n"
)


def changes_sql(db: str, csv_file: Path, header: str) -> tuple[float, int]:
    """Change rows/s of the pure-SQL load of changes and files, and the file rows it made."""
    psql(
        db,
        "-c",
        "CREATE TABLE y_changes (LIKE ai_code_changes INCLUDING ALL); "
        "CREATE TABLE y_files (LIKE ai_code_change_files INCLUDING ALL, "
        "FOREIGN KEY (change_id) REFERENCES y_changes ON DELETE CASCADE)",
    )
    parent = [name for name in header.split(",") if name != "metadata_json"]
    script = (
        "BEGIN;\n"
        + _typed_changes("pg_temp.y_stage", header)
        + ";\n"
        + f"\\copy y_stage({header}) FROM '{csv_file}' CSV HEADER\n"
        + f"INSERT INTO y_changes ({', '.join(parent)}) SELECT {', '.join(parent)} FROM y_stage;\n"
        + _FILES
        + "COMMIT;\n"
    )
    try:
        seconds = timed_psql(db, script)
        rows = count(db, "y_changes")
        files = count(db, "y_files")
    finally:
        psql(db, "-c", "DROP TABLE y_files, y_changes")
    return rows / seconds, files


def _reload_script(table: str, key: str, header: str, csv_file: Path, same: str) -> str:
    columns = header.split(",")
    stored = [c for c in columns if c != "metadata_json"]
    values = [c for c in stored if c != key]
    if table == "ai_code_changes":
        stage = _typed_changes("pg_temp.y_stage", header, metadata="text")
    else:
        stage = f"CREATE TEMP TABLE y_stage (LIKE {table} INCLUDING DEFAULTS)"
    assign = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    return (
        f"BEGIN;\n{stage};\n\\copy y_stage({header}) FROM '{csv_file}' CSV HEADER\n"
        f"INSERT INTO {table} AS t ({', '.join(stored)}) SELECT {', '.join(stored)} "
        f"FROM y_stage s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = s.{key} "
        f"AND ({', '.join(f't.{c}' for c in values)}) IS NOT DISTINCT FROM "
        f"({', '.join(f's.{c}' for c in values)}){same}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {assign};\nCOMMIT;\n"
    )


def reload_sql(db: str, endpoint: str, csv_file: Path, header: str) -> float:
    """Rows/s of the server's own unchanged reload of the CSV into the loaded table."""
    if endpoint == "commits":
        script = _reload_script("ai_commits", "commit_hash", header, csv_file, "")
    else:
        same = " AND t.metadata_digest = md5(s.metadata_json)"
        script = _reload_script("ai_code_changes", "change_id", header, csv_file, same)
    rows = count(db, "ai_commits" if endpoint == "commits" else "ai_code_changes")
    return rows / timed_psql(db, script)
