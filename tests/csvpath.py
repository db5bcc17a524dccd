"""The product's CSV path, for tests: bytes → `BlockCutter` blocks → `parse_block` rows."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

from syncer.endpoints import Endpoint
from syncer.parse.blocks import BlockCutter, RawBlock, header_names, is_plain
from syncer.parse.parser import parse_block
from syncer.parse.rows import Rejected, Row

#: A block size no test text reaches: the whole stream is one block, cut at its end.
WHOLE = 1 << 30
#: Block sizes that cut test texts: a block per record, a few records per block.
SMALL = (1, 64)


def raw_block(header: str, data: bytes) -> RawBlock:
    """One block of the records `data` under the CSV `header` line, as `BlockCutter` cuts it."""
    head = (header + "\n").encode()
    return RawBlock(head, header_names(head), data, is_plain(data))


def cut(chunks: Iterable[bytes], target: int) -> list[RawBlock]:
    """The blocks `BlockCutter` cuts from a stream arriving in `chunks`."""
    cutter = BlockCutter(target)
    blocks = [block for chunk in chunks for block in cutter.feed(chunk)]
    if (last := cutter.close()) is not None:
        blocks.append(last)
    return blocks


def read_chunks(
    endpoint: Endpoint, chunks: Iterable[bytes], target: int = WHOLE
) -> list[Row | Rejected]:
    """What the typed path reads from a stream arriving in `chunks`, cut at about `target`."""
    return [item for block in cut(chunks, target) for item in parse_block(endpoint, block)]


def chunked(data: bytes, size: int) -> list[bytes]:
    """`data` in chunks of `size` bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_bytes(endpoint: Endpoint, data: bytes, size: int = 7) -> list[Row | Rejected]:
    """`data` arriving in chunks of `size` bytes, read as one block.

    It also checks that cut into blocks of any size it reads the same (but for the numbers of
    rejected records, which count within their block).
    """
    items = read_chunks(endpoint, chunked(data, size))
    for target in SMALL:
        assert unnumbered(read_chunks(endpoint, chunked(data, size), target)) == unnumbered(items)
    return items


def only_rows(items: list[Row | Rejected]) -> list[Row]:
    """The rows of `items`, which must hold no rejected record."""
    assert not [item for item in items if isinstance(item, Rejected)]
    return [item for item in items if not isinstance(item, Rejected)]


def keys(items: Iterable[Row | Rejected]) -> list[object]:
    """Each row's key; a rejected row stays itself, so a comparison with keys fails on it."""
    return [item if isinstance(item, Rejected) else item[0] for item in items]


def unnumbered(items: Iterable[Row | Rejected]) -> list[Row | Rejected]:
    """Items with rejected records' numbers (which count within a block) zeroed."""
    return [Rejected(i.raw, i.reason, 0) if isinstance(i, Rejected) else i for i in items]


async def rows_of(
    endpoint: Endpoint, blocks: AsyncGenerator[RawBlock, None]
) -> list[Row | Rejected]:
    """Every block of a `CursorClient.stream_blocks` read the typed way, as `Batch.parse` does."""
    async with aclosing(blocks):
        return [item async for block in blocks for item in parse_block(endpoint, block)]
