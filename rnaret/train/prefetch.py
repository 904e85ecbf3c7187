"""Batches built ahead of the training loop, and moved to the device without blocking it.

``Prefetcher(items, depth)`` runs the iterator ``items`` (which builds, crops, masks and pins
batches) in a background thread, ``depth`` items ahead of the consumer, so the next batches are
ready while the device works on the current one. The items arrive in the iterator's order, so a
seeded iterator gives the same batches as building them inline (``depth=0``). An exception in
the thread is raised in the consumer at the item where it happened.

``pin(value)`` puts the tensors of a batch in page-locked memory (CUDA only) and
``to_device(value, device)`` copies them with ``non_blocking=True``: a copy from pinned memory
overlaps the computation already queued. Both walk tensors inside dataclasses, dicts, lists and
tuples.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterable, Iterator

import torch

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher(Iterator):
    """Iterate ``items`` in a daemon thread, at most ``depth`` items ahead (0: in the caller's
    thread, no look-ahead). Use as an iterator; ``close()`` (or ``with``) stops the thread."""

    def __init__(self, items: Iterable, depth: int = 2):
        self._items = iter(items)
        self._depth = int(depth)
        self._thread = None
        if self._depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=self._depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="rnaret-prefetch", daemon=True)
            self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failure(exc))

    def __next__(self):
        if self._thread is None:
            return next(self._items)
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # later calls stop too
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the background thread (the iterator is not advanced further)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._items = iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _map_tensors(value, fn):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _map_tensors(getattr(value, f.name), fn)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {key: _map_tensors(item, fn) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(item, fn) for item in value)
    return value


def pin(value, device: torch.device):
    """``value`` with its CPU tensors in pinned memory when ``device`` is CUDA (else unchanged)."""
    if torch.device(device).type != "cuda":
        return value
    return _map_tensors(value, lambda t: t.pin_memory() if t.device.type == "cpu" else t)


def to_device(value, device: torch.device):
    """``value`` with its tensors on ``device`` (non-blocking copies; a no-op on the same device)."""
    device = torch.device(device)
    return _map_tensors(value, lambda t: t.to(device, non_blocking=True))
