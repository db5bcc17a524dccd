"""`FakeApi`: the simulator running on a local port, as an async context manager."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from syncer.fakeapi.app import Simulator, build_app
from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.dataset import Dataset
from syncer.fakeapi.faults import Faults
from syncer.fakeapi.stats import Stats


class FakeApi:
    """A running simulator: `.url`, `.dataset`, `.faults`, `.stats`, `.config`.

    `stop()` then `start()` restarts it on the same port with the same data and counters.
    """

    def __init__(
        self,
        config: FakeApiConfig | None = None,
        dataset: Dataset | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or FakeApiConfig()
        self.simulator = Simulator.create(self.config, dataset)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def dataset(self) -> Dataset:
        """The served data set (mutate it, ask it for the truth)."""
        return self.simulator.dataset

    @property
    def faults(self) -> Faults:
        """The fault knobs."""
        return self.simulator.faults

    @property
    def stats(self) -> Stats:
        """What was served so far."""
        return self.simulator.stats

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:8001`."""
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> web.Application | None:
        """The running application, if started."""
        return None if self._runner is None else self._runner.app

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one, kept for later restarts)."""
        if self._runner is not None:
            return
        app = build_app(self.simulator)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeApi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
