"""The Cursor AI-code-tracking API simulator: `FakeApi`, `FakeApiConfig`, `Dataset`, `create_app`.

Usage in a test: ``async with FakeApi(FakeApiConfig(commits=500, changes=300, seed=1)) as api``,
then request ``api.url``, mutate ``api.dataset`` (`add`, `update`, `remove`; `drift.add_late`
for rows behind the newest, `drift.withdraw`), flip ``api.faults`` (`fail_next`,
`throttle_next`, `cut_next`, `shorten_next`, `bom`, `crlf`, `extra_column`, `permute_columns`,
`malformed_rate`, `chunk_delay`), read ``api.stats``, and compare with
``api.dataset.truth(endpoint, start, end)`` / ``api.dataset.malformed_keys(...)``.

Rows are served newest first (``order="desc"``, as the doc's samples); CSV streams come in
server-side pages of ``csv_page_rows`` rows, after which the page's duplicated rows repeat.
"""

from syncer.fakeapi.app import create_app
from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.dataset import Dataset
from syncer.fakeapi.faults import Faults
from syncer.fakeapi.server import FakeApi
from syncer.fakeapi.stats import Stats

__all__ = ["Dataset", "FakeApi", "FakeApiConfig", "Faults", "Stats", "create_app"]
