"""Progress lines for logs without a terminal (Dagster's run log)."""

from __future__ import annotations

import pytest

from fitmm_core.progress import Progress


def test_lines_name_the_stage_count_share_rate_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 10.0, 20.0, 40.0])
    monkeypatch.setattr("fitmm_core.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    with Progress("encode images", 400, "img", bar=False, log=lines.append, every_s=5.0) as progress:
        progress.update(100)  # t = 10 s: 10 img/s, 300 left
        progress.update(300)  # t = 20 s: done, so no progress line, only the final one at t = 40 s
    assert lines == [
        "encode images: 100/400 img (25.0%), 10.0 img/s, about 30 s left",
        "encode images: 400 img in 40.0 s (10.0 img/s)",
    ]


def test_lines_are_throttled_and_none_without_a_log() -> None:
    lines: list[str] = []
    with Progress("encode texts", 1000, "text", bar=False, log=lines.append, every_s=3600.0) as progress:
        for _ in range(999):
            progress.update()
        assert lines == []
    assert len(lines) == 1 and lines[0].startswith("encode texts: 999 text in ")
    with Progress("encode texts", 10, "text", bar=False) as quiet:
        quiet.update(10)
    assert quiet.done == 10


def test_no_final_line_after_an_error() -> None:
    lines: list[str] = []
    with pytest.raises(RuntimeError):
        with Progress("fetch images", 5, "url", bar=False, log=lines.append) as progress:
            progress.update(2)
            raise RuntimeError("network down")
    assert lines == []
