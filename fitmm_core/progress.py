"""Progress of long loops: a tqdm bar on a terminal and/or throttled log lines with throughput.

Inside a Dagster asset there is no terminal to draw a bar on, so the asset passes ``context.log.info``
as ``log``: the run's event log then gets a line at most every ``every_s`` seconds and one at the end,
e.g. ``encode images: 12,288/50,000 img (24.6%), 1,830.2 img/s, about 21 s left``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from tqdm.auto import tqdm

Log = Callable[[str], None]
LOG_EVERY_S = 15.0


class Progress:
    """Count ``total`` units of work; use as a context manager and call :meth:`update`."""

    def __init__(
        self, desc: str, total: int, unit: str, bar: bool = True, log: Log | None = None, every_s: float = LOG_EVERY_S
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.log = log
        self.every_s = every_s
        self.done = 0
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=not bar)
        self._started = time.perf_counter()
        self._logged = self._started

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bar.close()
        if self.log is not None and kind is None and self.total:
            seconds = time.perf_counter() - self._started
            self.log(f"{self.desc}: {self.done:,} {self.unit} in {seconds:.1f} s ({self._rate(seconds)})")

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.perf_counter()
        if self.log is not None and now - self._logged >= self.every_s and self.done < self.total:
            self._logged = now
            self.log(self.message(now - self._started))

    def advance_to(self, done: int) -> None:
        """:meth:`update` by however much ``done`` exceeds what was counted so far."""
        if done > self.done:
            self.update(done - self.done)

    def message(self, seconds: float) -> str:
        """``desc: done/total unit (share), rate, about T s left``."""
        share = self.done / self.total if self.total else 1.0
        rate = self.done / seconds if seconds > 0 else 0.0
        left = f", about {(self.total - self.done) / rate:,.0f} s left" if rate > 0 else ""
        return f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({share:.1%}), {self._rate(seconds)}{left}"

    def _rate(self, seconds: float) -> str:
        return f"{self.done / seconds:,.1f} {self.unit}/s" if seconds > 0 else f"- {self.unit}/s"
