"""`BlockCutter`, the one finder of record boundaries in a stream: whole records in every block,
whatever the chunks, with stray and unterminated quotes bounded in memory."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.endpoints import Endpoint
from syncer.parse.blocks import (
    BlockCutter,
    RawBlock,
    cut_blocks,
    header_names,
    is_plain,
    raw_columns,
)
from syncer.parse.records import MAX_RECORD_SIZE, RESYNC_SIZE, records_end

# --- cutting bytes into blocks -----------------------------------------------------------------


def cut(data: bytes, sizes: list[int], target: int) -> tuple[bytes | None, list[bytes]]:
    cutter = BlockCutter(target)
    blocks, pos = [], 0
    for size in sizes:
        blocks.extend(cutter.feed(data[pos : pos + size]))
        pos += size
    blocks.extend(cutter.feed(data[pos:]))
    if (block := cutter.close()) is not None:
        blocks.append(block)
    for block in blocks:
        assert block.plain == is_plain(block.data)
        assert (block.header, block.names) == (cutter.header, cutter.names)
    return cutter.header, [block.data for block in blocks]


async def test_only_a_responses_final_block_is_flagged_last_whatever_the_chunking() -> None:
    """The flag that lets a window's last block carry the mark: set on one block, the final one,
    whether it is the cutter's remainder or a block the last chunk completed."""
    header = b"a,b\n"
    data = header + b"".join(b"%d,x\n" % n for n in range(20))

    async def chunks(size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    for size in (1, 3, 7, len(data)):
        for target in (1, 8, 30, len(data)):
            blocks = [block async for block in cut_blocks(chunks(size), target)]
            assert [block.last for block in blocks] == [False] * (len(blocks) - 1) + [True]
            assert b"".join(block.data for block in blocks) == data[len(header) :]
    assert [block async for block in cut_blocks(chunks(len(data)), 8)][-1].data.endswith(b"\n")
    for body in (b"", header):

        async def only(body: bytes = body) -> AsyncIterator[bytes]:
            yield body

        assert [block async for block in cut_blocks(only(), 8)] == []


def test_blocks_hold_whole_records_whatever_the_chunking() -> None:
    header = b'a,"b\nb",c\r\n'
    records = [
        b'1,"x\ny",\xe6\x97\xa5\r\n',
        b'2,"say ""hi""\n,",3\r\n',
        b'3,,"\n\n"\r\n',
        b"4,5,6",
    ]
    data = b"\xef\xbb\xbf" + header + b"".join(records)
    rng = random.Random(3)
    for _ in range(200):
        sizes = [rng.randint(1, 9) for _ in range(rng.randint(0, 20))]
        target = rng.choice([1, 5, 30, 1000])
        got_header, blocks = cut(data, sizes, target)
        assert got_header == header
        assert b"".join(blocks) == b"".join(records)
        for block in blocks:  # each block is whole records: an even number of quotes
            assert block.count(b'"') % 2 == 0
        if len(records) > 1 and target == 1:
            assert len(blocks) > 1, "a big chunk is cut into blocks of about the target"
    assert header_names(header) == ("a", "b\nb", "c")


def test_plain_csv_is_what_both_parsers_read_alike() -> None:
    assert is_plain(b'a,"b,""c""\nd",\r\n,,\n')
    assert is_plain(b"a,b\nc,d")  # the last record may lack its line end
    assert not is_plain(b'a,b"c\n')  # a quote inside an unquoted field
    assert not is_plain(b'a,"b"c\n')  # text after a closing quote
    assert not is_plain(b'a,"b\n')  # an open quote
    assert not is_plain(b"a,b\n\\.\nc,d\n")  # COPY's end-of-data marker
    assert is_plain(b"a,b\\.c\n")


def test_raw_columns_need_known_unique_names_and_the_required_ones() -> None:
    names = tuple(c.name for c in Endpoint.COMMITS.columns)
    assert raw_columns(Endpoint.COMMITS, names) == list(names)
    assert raw_columns(Endpoint.COMMITS, names[::-1]) == list(names[::-1])
    no_commit_ts = tuple(name for name in names if name != "commit_ts")
    assert raw_columns(Endpoint.COMMITS, no_commit_ts) is not None
    assert raw_columns(Endpoint.COMMITS, names[:-1]) is not None  # no commit_source (the doc's)
    assert raw_columns(Endpoint.COMMITS, (*names, "agent_version")) is None
    assert raw_columns(Endpoint.COMMITS, (*names, "message")) is None
    assert raw_columns(Endpoint.COMMITS, names[1:]) is None  # no commit_hash


# --- the exact record grammar ----------------------------------------------------------------


def csv_module_records_end(text: str) -> int:
    """Index past the last whole record: CPython's csv reader state machine, one char at a time."""
    state, last = "record", 0
    for index, char in enumerate(text):
        if state == "record" and char == "\n":
            last = index + 1
            continue
        if state in ("record", "field start"):
            state = {'"': "quoted", ",": "field start", "\n": "record"}.get(char, "field")
        elif state == "field":
            state = {",": "field start", "\n": "record"}.get(char, "field")
        elif state == "quoted":
            state = "quote in quoted" if char == '"' else "quoted"
        else:  # a quote inside a quoted field: doubled, the field's end, or (lenient) text
            state = {'"': "quoted", ",": "field start", "\n": "record"}.get(char, "field")
        if state == "record":
            last = index + 1
    return last


@settings(max_examples=500)
@given(st.text(alphabet='a,"\n', max_size=60))
def test_property_records_end_where_the_csv_module_ends_a_record(text: str) -> None:
    want = csv_module_records_end(text)
    assert records_end(text) == want
    assert records_end(text.encode()) == want


def test_a_stray_quote_does_not_hold_the_stream_back() -> None:
    header = b"a,b\n"
    stray = b'1,x"y\n'
    record = b'2,"q"\n'
    cutter = BlockCutter(64)
    blocks = [block.data for block in cutter.feed(header + stray)]
    fed = 0
    while fed < 3 * RESYNC_SIZE:
        blocks += [block.data for block in cutter.feed(record * 1000)]
        fed += len(record) * 1000
        assert sum(map(len, cutter._pending)) < RESYNC_SIZE + len(record) * 1000
    last = cutter.close()
    assert last is not None
    assert blocks
    assert b"".join(blocks) + last.data == stray + record * (fed // len(record))
    assert all(records_end(block) == len(block) for block in blocks), "records are whole"


def test_a_block_cut_inside_a_quoted_field_by_a_stray_quote_is_cut_again() -> None:
    # The stray quote makes the count odd, so the newline inside the next quoted field
    # looks like a boundary.
    data = b'a,b\n1,x"y\n2,"multi\nline"\n3,z\n'
    for target in (1, 8, 16):
        _, blocks = cut(data, [], target)
        assert b"".join(blocks) == data[4:]
        for block in blocks:
            assert records_end(block + b"\n") >= len(block), (target, block)


def test_an_open_quote_at_the_end_of_the_stream_is_left_to_the_typed_reader() -> None:
    cutter = BlockCutter(1)
    assert cutter.feed(b'a,b\n1,"open') == []
    assert cutter.close() == RawBlock(b"a,b\n", ("a", "b"), b'1,"open', False)


def test_an_endless_quoted_field_goes_out_as_its_first_line_after_the_largest_record() -> None:
    cutter = BlockCutter(4096)
    blocks = cutter.feed(b'a,b\n1,"open\n')
    body = b"2,x\n" * 10_000
    fed = 0
    while fed < MAX_RECORD_SIZE + 2 * len(body):
        blocks += cutter.feed(body)
        fed += len(body)
        assert sum(map(len, cutter._pending)) < MAX_RECORD_SIZE + len(body)
    last = cutter.close()
    assert (blocks[0].data, blocks[0].plain) == (b'1,"open\n', False), "the open line, alone"
    assert last is not None
    assert b"".join(block.data for block in blocks[1:]) + last.data == b"2,x\n" * (fed // 4)
