"""The raw fast path's SQL: CSV bytes COPied as text, typed and upserted by the server.

A block of complete records goes to an all-text staging table as it is (`COPY … FORMAT csv`,
`ord` keeping arrival order); one statement converts every staged row, keeps the winning row
of each key (the greatest created_at, then the last to arrive), and upserts with the same
guard as the typed path. The conversions accept exactly what the typed parser accepts, with
the same values, and raise on anything else — the writer then rolls the block back and reads
it the typed way, which names and quarantines the bad rows one by one. A raise is
`'!' || value` cast to bigint: never valid, never folded early.

The typed and raw paths define `files_digest` alike: md5 of the jsonb text of the file list
as `[[file_name, file_extension, lines_added, lines_deleted, extra], …]` in file order. The raw
path also records `metadata_digest`, the md5 of the metadata text it typed them from: a change
re-served with the same text keeps its stored file rows and `files_digest` unparsed (most of an
unchanged reload's time was parsing that JSON), and only its other columns are compared.

Both endpoints also record `row_digest`, the md5 of the whole record's text (see
`row_digest`): a row re-served with the text it was typed from is neither typed nor compared
again, only counted as unchanged. Any other write (the typed path) sets it NULL, so a
non-NULL digest always names a text whose values are the stored ones.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from syncer.endpoints import FILE_KEYS, Endpoint, Kind
from syncer.store.rawtypes import (
    JSON_VALUE,
    METADATA,
    RADIX,
    SQL_TYPE,
    convert,
    fail,
    typed_columns,
)

_FILE_JSON = tuple(key.json_name for key in FILE_KEYS)
#: The columns of a file row (`ai_code_change_files`), in table order.
FILE_COLUMNS = ["change_id", "file_index", *(key.column for key in FILE_KEYS), "extra"]
#: Changes with every rule that types a record's text into the stored values: the digests
#: written before then no longer match, so those rows are typed and compared by value again
#: (a row found equal is left alone, its old digest with it: only a changed row is digested
#: anew, so a change of version slows later reloads of unchanged rows, never makes them wrong).
ROW_DIGEST_VERSION = 1


def row_digest(endpoint: Endpoint, alias: str, metadata_digest: str = "") -> str:
    """md5 of a staged record's text, column by column in the endpoint's order (a row
    constructor's text: unambiguous, NULL for a column the CSV lacked). A change's metadata
    counts by its md5, `metadata_digest`, which is computed anyway (the long text is hashed
    once)."""
    texts = [
        metadata_digest if c.kind is Kind.FILES else f"{alias}.{c.name}" for c in endpoint.columns
    ]
    return f"md5(ROW({ROW_DIGEST_VERSION}, {', '.join(texts)})::text)"


def stage_ddl(endpoint: Endpoint) -> str:
    """The raw path's staging tables of an endpoint, created once per connection.

    `stage_raw_*` holds the block as text; `stage_ready_*` the typed rows, the winner of each
    key, ready to upsert (see `prepare_raw` and `apply_raw`).
    """
    texts = ", ".join(f"{c.name} text" for c in endpoint.columns)
    ddl = [
        f"CREATE TEMP TABLE IF NOT EXISTS stage_raw_{endpoint.value} (ord bigserial, {texts})",
        f"CREATE TEMP TABLE IF NOT EXISTS stage_ready_{endpoint.value} "
        f"(ord bigint, {typed_columns(endpoint)}, extra jsonb, row_digest text, same boolean"
        + (
            ", files_digest text, metadata_digest text, files_kept boolean)"
            if endpoint is Endpoint.CHANGES
            else ")"
        ),
        f"CREATE TEMP TABLE IF NOT EXISTS stage_raw_same_{endpoint.value} "
        f"(ord bigint, {endpoint.key} text, created_at timestamptz, at tid, version xid)",
    ]
    if endpoint is Endpoint.CHANGES:
        files = ", ".join(f"{key.column} {SQL_TYPE[key.kind]}" for key in FILE_KEYS)
        ddl.append(
            "CREATE TEMP TABLE IF NOT EXISTS stage_raw_files (ord bigint, file_index integer, "
            f"{files}, extra jsonb)"
        )
        ddl.append(
            "CREATE TEMP TABLE IF NOT EXISTS stage_raw_written (change_id text, ord bigint, "
            "ins boolean, kept boolean)"
        )
        ddl.append(
            "CREATE TEMP TABLE IF NOT EXISTS stage_raw_kept "
            "(ord bigint, kept_digest text, kept_metadata text)"
        )
    return "; ".join(f"{statement} ON COMMIT DELETE ROWS" for statement in ddl)


def guarded_upsert(
    endpoint: Endpoint,
    names: list[str],
    source: str,
    returning: str,
    select: dict[str, str] | None = None,
    carried: tuple[str, ...] = (),
) -> str:
    """`INSERT … SELECT … ON CONFLICT DO UPDATE` that compares before updating (both paths).

    The WHERE guard: a row that did not change is not rewritten, so re-reading the lookback
    leaves no dead tuples and fires no triggers; and a row older than the stored one (an
    earlier `created_at`: a commit's version from before it was amended) never overwrites it,
    whichever batch or pass serves it. `select` maps a column to the expression that produces
    it from `source` (default: the column itself); `carried` columns are written with the row
    but not compared (bookkeeping that describes the values, like `metadata_digest`).
    """
    key = endpoint.key
    exprs = ", ".join((select or {}).get(c, c) for c in names)
    assign = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c != key)
    old, new = (_compared(endpoint, names, carried, alias) for alias in ("t", "EXCLUDED"))
    return (
        f"INSERT INTO {endpoint.table} AS t ({', '.join(names)}) "
        f"SELECT {exprs} FROM {source} "
        f"ON CONFLICT ({key}) DO UPDATE SET {assign}, synced_at = now() "
        f"WHERE EXCLUDED.created_at >= t.created_at "
        f"AND {old} IS DISTINCT FROM {new} RETURNING {returning}"
    )


def _compared(endpoint: Endpoint, names: list[str], carried: tuple[str, ...], alias: str) -> str:
    """`(alias.c, …)`: the columns the guard compares (all but the key and `carried`)."""
    values = [c for c in names if c != endpoint.key and c not in carried]
    return "(" + ", ".join(f"{alias}.{c}" for c in values) + ")"


def _prepare_sql(endpoint: Endpoint, decimal_only: bool) -> str:
    """`decimal_only`: the server reads non-decimal integers (PostgreSQL 16+); refuse them.

    One check per row over all its integer texts (a check per column costs twice as much).
    The rows found unchanged by their digest (`stage_raw_same_*`) are not typed: they only
    take part in choosing each key's winner, with their stored created_at.
    """
    columns = [c for c in endpoint.columns if c.kind is not Kind.FILES]
    names = [c.name for c in columns]
    conv = ", ".join(f"{convert(c)} AS {c.name}" for c in columns)
    where = [f"s.ord NOT IN (SELECT ord FROM stage_raw_same_{endpoint.value})"]
    if decimal_only:
        ints = ", ".join(c.name for c in columns if c.kind is Kind.INT)
        where.append(f"CASE WHEN concat({ints}) ~ '{RADIX}' THEN {fail(ints)} > 0 ELSE true END")
    source = f"stage_raw_{endpoint.value} s WHERE {' AND '.join(where)}"
    more, same_more = "", ""
    digest = row_digest(endpoint, "s")
    if endpoint is Endpoint.CHANGES:
        entry = ", ".join([*(key.column for key in FILE_KEYS), "extra"])
        files = (
            f"SELECT ord, jsonb_agg(jsonb_build_array({entry}) ORDER BY file_index) AS files "
            "FROM stage_raw_files GROUP BY ord"
        )
        # The metadata's md5 is taken once, for both digests that use it.
        source = (
            "(SELECT s.*, f.files, k.kept_digest, coalesce(k.kept_metadata, "
            "md5(s.metadata_json)) AS metadata_digest FROM stage_raw_changes s "
            f"LEFT JOIN ({files}) f USING (ord) LEFT JOIN stage_raw_kept k USING (ord) "
            f"WHERE {' AND '.join(where)} OFFSET 0) s"
        )
        conv += ", coalesce(s.files, '[]'::jsonb) AS files, s.kept_digest, s.metadata_digest"
        digest = row_digest(endpoint, "s", "s.metadata_digest")
        same_more = ", NULL::jsonb, NULL::text, NULL::text"
        # A kept change's files are the stored ones: so is their digest (md5 never runs).
        more = (
            ", coalesce(kept_digest, md5(files::text)) AS files_digest, metadata_digest, "
            "kept_digest IS NOT NULL AS files_kept"
        )
    typed = f"SELECT ord, {conv}, {digest} AS row_digest, false AS same FROM {source}"
    stored = ", ".join(
        c.name if c.name in (endpoint.key, "created_at") else f"NULL::{SQL_TYPE[c.kind]}"
        for c in columns
    )
    same = f"SELECT ord, {stored}{same_more}, NULL::text, true FROM stage_raw_same_{endpoint.value}"
    return (
        f"INSERT INTO stage_ready_{endpoint.value} (ord, {', '.join(names)}, extra, row_digest, "
        + ("same, files_digest, metadata_digest, files_kept) " if more else "same) ")
        + _winners(endpoint, typed, same, names, more)
    )


def _unchanged(
    endpoint: Endpoint, names: list[str], carried: tuple[str, ...] = (), stale: str = "false"
) -> str:
    """A correlated probe of the stored row of `r`'s key: true when the upsert's guard would
    leave it alone (it is newer, or holds the same values), NULL when there is none or when
    `stale` holds of it.

    Filtering those rows out before the upsert is what makes an unchanged reload cheap:
    `ON CONFLICT DO UPDATE` locks every conflicting row before its WHERE is read, a write to
    each heap page. A scalar subquery (never pulled up into a join the planner might turn
    into a scan of the whole table) is one probe of the primary key per row.
    """
    old, new = (_compared(endpoint, names, carried, alias) for alias in ("t", "r"))
    return (
        f"SELECT CASE WHEN {stale} THEN NULL ELSE t.created_at > r.created_at "
        f"OR {old} IS NOT DISTINCT FROM {new} END "
        f"FROM {endpoint.table} t WHERE t.{endpoint.key} = r.{endpoint.key}"
    )


def _apply_sql(endpoint: Endpoint, look_up: bool) -> str:
    """The upsert of the prepared rows; with `look_up`, only of those that the stored rows
    show changed (see `_unchanged`), else of all (a first load: nothing is stored but what
    the load wrote itself, which the upsert's own guard compares)."""
    names = [c.name for c in endpoint.columns if c.kind is not Kind.FILES]
    ready = f"stage_ready_{endpoint.value}"
    # A row found unchanged at staging time must still be that very row version now: the
    # other lane's previous block may have written it since (and its new version then wins,
    # as the last to arrive, unless this block's is written: so the block is read the typed
    # way). The version is known by its place and inserting transaction, so this is a heap
    # fetch per row, not a probe of the key.
    same = f"stage_raw_same_{endpoint.value}"
    moved = f"(SELECT t.xmin FROM {endpoint.table} t WHERE t.ctid = s.at) = s.version"
    confirmed = (
        f"(SELECT count(*) FROM {same} s WHERE CASE WHEN {moved} THEN true "
        f"ELSE {fail(f's.{endpoint.key}')} > 0 END)"
    )
    tail = (
        f"SELECT (SELECT count(*) FROM {ready}) AS rows, {confirmed} AS confirmed, "
        "count(*) FILTER (WHERE ins) AS inserted, count(*) FILTER (WHERE NOT ins) AS updated, "
        f"(SELECT max(created_at) FROM {ready}) AS newest "
    )
    if endpoint is Endpoint.COMMITS:
        names += ["extra", "row_digest"]
        changed = f"{ready} r"
        if look_up:
            probe = _unchanged(endpoint, names, ("row_digest",))
            changed += f" WHERE NOT r.same AND NOT coalesce(({probe}), false)"
        upsert = guarded_upsert(
            endpoint, names, changed, "(xmax = 0) AS ins", carried=("row_digest",)
        )
        return f"WITH up AS ({upsert}) {tail}FROM up"
    names += ["extra", "files_digest", "metadata_digest", "row_digest"]
    carried = ("metadata_digest", "row_digest")
    # A change whose files were kept at staging time must still hold them now (the other
    # lane's previous block may have served it anew, or a prune removed it): else the block
    # is read the typed way. The same probe that finds the unchanged rows checks it.
    stale = "r.files_kept AND t.metadata_digest IS DISTINCT FROM r.metadata_digest"
    changed = f"{ready} r"
    if look_up:
        changed += (
            f" WHERE NOT r.same AND CASE ({_unchanged(endpoint, names, carried, stale)}) "
            "WHEN true THEN false WHEN false THEN true "
            f"ELSE CASE WHEN r.files_kept THEN {fail('r.change_id')} > 0 ELSE true END END"
        )
    upsert = guarded_upsert(
        endpoint, names, changed, "change_id, (xmax = 0) AS ins", carried=carried
    )
    return (
        f"WITH up AS ({upsert}), "
        "w AS (INSERT INTO stage_raw_written (change_id, ord, ins, kept) "
        f"SELECT up.change_id, r.ord, up.ins, r.files_kept FROM up JOIN {ready} r "
        f"USING (change_id) RETURNING ins) {tail}FROM w"
    )


def _winners(endpoint: Endpoint, typed: str, same: str, names: list[str], more: str) -> str:
    """The staged rows, one per key: the greatest created_at, then the last to arrive (the
    duplicate rule, see `syncer.store.batch.Batch.absorb`), whether typed now or found
    unchanged (`same`). The winner holds its key's greatest created_at, so the block's newest
    is the winners' newest.

    Every typed row is converted (so any bad one raises), once: `OFFSET 0` keeps the planner
    from copying the conversions into each place that uses them.
    """
    key = endpoint.key
    return (
        f"SELECT DISTINCT ON ({key}) ord, {', '.join(names)}, NULL::jsonb AS extra, row_digest, "
        f"same{more} FROM (({typed} OFFSET 0) UNION ALL ({same})) c "
        f"ORDER BY {key}, created_at DESC, ord DESC"
    )


#: The file entries, parsed once as jsonb (a third of the cost of json and a record per
#: entry); an entry that is not an object raises, as the typed parser rejects it.
_FILES_SQL = (
    "INSERT INTO stage_raw_files SELECT s.ord, e.i - 1, "
    + ", ".join(JSON_VALUE[key.kind](f"(e.v -> '{key.json_name}')") for key in FILE_KEYS)
    + ", NULLIF(e.v - "
    + " - ".join(f"'{key}'" for key in _FILE_JSON)
    + ", '{}'::jsonb) FROM stage_raw_changes s "
    f"CROSS JOIN LATERAL jsonb_array_elements({METADATA}) WITH ORDINALITY AS e(v, i) "
    "WHERE s.metadata_json <> '' AND s.ord NOT IN (SELECT ord FROM stage_raw_kept) "
    f"AND CASE WHEN jsonb_typeof(e.v) = 'object' THEN true ELSE {fail('e.v')} > 0 END"
)


def _stored_in_span(endpoint: Endpoint, columns: str) -> str:
    """`WITH … t AS (…)`: the stored rows whose created_at lies in the staged block's span, at
    most four times as many as the block holds.

    The API serves a window in createdAt order, so a block's rows are a narrow span and the
    stored ones were written in that order too: one range scan of the created_at index reads
    their heap pages in place, and a hash join with the block finds each key's stored row. A
    probe of the primary key per row (a random walk over the whole table) cost twice as much.
    The span is the least and greatest created_at text, cast (the API spells every timestamp
    alike, so text order is time order; a text that does not cast would fail the block's typing
    anyway). Mixed spellings, a block out of order, or the limit only make the lookup find
    fewer rows, which are then typed and compared by value: slower, never wrong.
    """
    staged = f"stage_raw_{endpoint.value}"
    return (
        "WITH b AS (SELECT min(created_at)::timestamptz AS lo, max(created_at)::timestamptz AS hi, "
        f"count(*) AS n FROM {staged}), "
        f"t AS (SELECT {columns} FROM {endpoint.table} t "
        "WHERE t.created_at BETWEEN (SELECT lo FROM b) AND (SELECT hi FROM b) "
        "LIMIT (SELECT 4 * n FROM b))"
    )


#: The rows re-served with the very text they were typed from (`row_digest`): neither typed
#: nor compared again. The digest is a filter, not a join key (`IS TRUE`): computed only
#: where a stored row is, and never a sort key of a merge join.
_SAME_COMMITS = (
    _stored_in_span(Endpoint.COMMITS, "t.commit_hash, t.created_at, t.ctid, t.xmin, t.row_digest")
    + " INSERT INTO stage_raw_same_commits SELECT s.ord, s.commit_hash, t.created_at, t.ctid, "
    "t.xmin FROM stage_raw_commits s JOIN t ON t.commit_hash = s.commit_hash "
    f"WHERE (t.row_digest = {row_digest(Endpoint.COMMITS, 's')}) IS TRUE"
)
#: The changes whose metadata text is the one their stored file rows were typed from, with
#: the stored digests (the text's md5 is not computed again for them); of those, the ones
#: whose whole text is the stored row's, as for commits. One lookup for both.
_KEEP_SQL = (
    _stored_in_span(
        Endpoint.CHANGES,
        "t.change_id, t.files_digest, t.metadata_digest, t.created_at, t.ctid, t.xmin, "
        "t.row_digest",
    )
    + ", p AS (SELECT s.ord, s.change_id, t.files_digest, t.metadata_digest, t.created_at, "
    "t.ctid, t.xmin, t.row_digest = "
    f"{row_digest(Endpoint.CHANGES, 's', 't.metadata_digest')} AS same "
    "FROM stage_raw_changes s JOIN t ON t.change_id = s.change_id "
    "WHERE (t.metadata_digest = md5(s.metadata_json) AND t.files_digest IS NOT NULL) IS TRUE), "
    "k AS (INSERT INTO stage_raw_kept SELECT ord, files_digest, metadata_digest FROM p) "
    "INSERT INTO stage_raw_same_changes SELECT ord, change_id, created_at, ctid, xmin "
    "FROM p WHERE same"
)


_PREPARE = {(e, strict): _prepare_sql(e, strict) for e in Endpoint for strict in (False, True)}
_APPLY = {(e, look_up): _apply_sql(e, look_up) for e in Endpoint for look_up in (False, True)}
_DELETE_FILES = (
    "DELETE FROM ai_code_change_files f USING stage_raw_written w "
    "WHERE f.change_id = w.change_id AND NOT w.ins AND NOT w.kept"
)
_INSERT_FILES = (
    f"INSERT INTO ai_code_change_files ({', '.join(FILE_COLUMNS)}) SELECT w.change_id, "
    + ", ".join(f"f.{name}" for name in FILE_COLUMNS[1:])
    + " FROM stage_raw_written w JOIN stage_raw_files f ON f.ord = w.ord"
)


async def prepare_raw(
    conn: asyncpg.Connection,
    endpoint: Endpoint,
    columns: list[str],
    data: bytes,
    *,
    look_up: bool = True,
) -> None:
    """COPY a block and type it into `stage_ready_*` (raises on anything the typed path would
    not read alike). Writes no synced table (it only reads them, with `look_up`), so it may run
    while another connection writes.

    Run it inside a transaction (or savepoint), then `apply_raw` in the same one.
    """
    await conn.execute("SET LOCAL TimeZone = 'UTC'")  # a timestamp without offset is UTC
    # A memoryview: asyncpg would take bytes for a file name.
    await conn.copy_to_table(
        f"stage_raw_{endpoint.value}", source=memoryview(data), columns=columns, format="csv"
    )
    if look_up:  # the stored rows the block serves unchanged, or with the same metadata
        await conn.execute(_SAME_COMMITS if endpoint is Endpoint.COMMITS else _KEEP_SQL)
    if endpoint is Endpoint.CHANGES:
        await conn.execute(_FILES_SQL)
    await conn.execute(_PREPARE[endpoint, conn.get_server_version().major >= 16])


async def apply_raw(
    conn: asyncpg.Connection, endpoint: Endpoint, *, look_up: bool = True
) -> tuple[int, int, int, datetime | None]:
    """Upsert the prepared rows (and replace changed changes' files):
    (rows, inserted, updated, newest created_at)."""
    row = await conn.fetchrow(_APPLY[endpoint, look_up])
    rows, inserted, updated, newest = row["rows"], row["inserted"], row["updated"], row["newest"]
    if endpoint is Endpoint.CHANGES:
        if updated:
            await conn.execute(_DELETE_FILES)
        if inserted or updated:
            await conn.execute(_INSERT_FILES)
    return int(rows), int(inserted), int(updated), newest
