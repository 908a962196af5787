"""Map a function over consecutive chunks of a (possibly lazy) sequence in a thread pool, a bounded
window ahead of the consumer, yielding the results in input order."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_chunks_in_order(
    fn: Callable[[Sequence[Item]], list[Result]],
    items: Iterable[Item],
    threads: int,
    chunk: int,
    ahead: int,
    thread_name: str,
) -> Iterator[Result]:
    """``fn(items[k * chunk : (k + 1) * chunk])`` for k = 0, 1, ... in ``threads`` threads, one
    result per item, in order. At most about ``ahead`` items are taken ahead of the consumer (one
    task per ``chunk`` items: a task per item costs more than small work such as reading a cached
    file); the threads stop when the iterator is exhausted or closed."""
    remaining = iter(items)
    window: deque[Future[list[Result]]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=thread_name) as pool:
        while True:
            while len(window) * chunk < max(ahead, chunk):
                part = list(itertools.islice(remaining, chunk))
                if not part:
                    break
                window.append(pool.submit(fn, part))
            if not window:
                return
            yield from window.popleft().result()
