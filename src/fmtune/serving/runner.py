"""One thread runs every predict; requests that queued while it was busy run as one batch.

Under load this is what lets the server keep up with calling the model directly: requests run
together cost less model time each than one by one (reports/serving.md). It never waits to fill
a batch, so a request that arrives alone runs at once. Requests are checked before they queue, so
a bad one gets its own error and never joins a batch; if a batch fails anyway, its requests run
again one by one and only the culprit gets the error. TensorFlow always runs on this one thread,
so its per-thread caches stay warm.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmtune.serving import signatures
from fmtune.serving.models import Servable, Signature
from fmtune.wire.contract import SIGNATURE

MAX_ROWS = 256


@dataclass
class _Job:
    signature: Signature
    inputs: Mapping[str, np.ndarray]
    output_filter: tuple[str, ...]
    key: tuple[Any, ...] | None  # None: runs alone
    done: Future[dict[str, np.ndarray]] = field(default_factory=Future)

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def _merge_key(servable: Servable, name: str, inputs: Mapping[str, np.ndarray], outputs: tuple[str, ...]) -> Any:
    """Requests with equal keys can be stacked: same model, signature and outputs, same per-row shapes."""
    if not inputs or any(a.ndim == 0 for a in inputs.values()) or len({len(a) for a in inputs.values()}) != 1:
        return None
    return (id(servable), name, outputs, tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))


class Runner:
    def __init__(self, max_rows: int = MAX_ROWS):
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: deque[_Job | None] = deque()  # taken from the queue but not yet run; runner thread only
        self._thread = threading.Thread(target=self._run, name="predict", daemon=True)
        self._thread.start()

    def submit(
        self, servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> Future[dict[str, np.ndarray]]:
        """Check the request (raising ``ServingError`` at once) and queue it."""
        name = signature_name or SIGNATURE
        signature = servable.signature(name)
        outputs = tuple(output_filter)
        signatures.check(signature, inputs, outputs)
        # A signature whose outputs are not one row per input row runs each request alone: a batch
        # of K requests could not be told from one request's ``[K]`` output.
        key = _merge_key(servable, name, inputs, outputs) if signature.batched else None
        job = _Job(signature, inputs, outputs, key)
        self._queue.put(job)
        return job.done

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _take(self) -> list[_Job] | None:
        """The oldest job and every waiting job that can join it, up to ``max_rows`` rows."""
        while True:  # everything waiting, in order of arrival
            try:
                self._held.append(self._queue.get(block=not self._held))
            except queue.Empty:
                break
        first = self._held.popleft()
        if first is None:
            return None
        batch, rows, rest = [first], first.rows, deque[_Job | None]()
        for job in self._held:
            if job is not None and first.key is not None and job.key == first.key and rows + job.rows <= self.max_rows:
                batch.append(job)
                rows += job.rows
            else:
                rest.append(job)
        self._held = rest
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if len(batch) > 1 and self._run_together(batch):
                continue
            for job in batch:
                try:
                    job.done.set_result(signatures.execute(job.signature, job.inputs, job.output_filter))
                except BaseException as exc:  # the caller gets whatever went wrong; the runner goes on
                    job.done.set_exception(exc)

    def _run_together(self, batch: list[_Job]) -> bool:
        """Run stacked inputs once and hand each job its rows; False if the batch must run apart."""
        first = batch[0]
        stacked = {name: np.concatenate([job.inputs[name] for job in batch]) for name in first.inputs}
        try:
            outputs = signatures.execute(first.signature, stacked, first.output_filter)
        except Exception:  # run apart, so the error reaches only the request that caused it
            return False
        total = sum(job.rows for job in batch)
        if any(value.ndim == 0 or len(value) != total for value in outputs.values()):
            return False  # an output that is not one row per input row cannot be split
        start = 0
        for job in batch:
            end = start + job.rows
            job.done.set_result({name: value[start:end] for name, value in outputs.items()})
            start = end
        return True
