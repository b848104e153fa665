"""One thread runs every predict; requests that queued while it was busy run as one batch.

Under load this is what lets the server keep up with calling the model directly: requests run
together cost less model time each than one by one (reports/serving.md). It never waits to fill
a batch, so a request that arrives alone runs at once. Requests are checked before they queue, so
a bad one gets its own error and never joins a batch; if a batch fails anyway, its requests run
again one by one and only the culprit gets the error. TensorFlow always runs on this one thread,
so its per-thread caches stay warm.

What a request can cost is bounded: it may ask for at most ``max_request_rows`` rows (TF Serving's
``input_batch_size_limit``, refused in its words), the model never sees more than ``max_rows``
rows in one call (a bigger request runs in slices, as TF Serving's large batch splitting does), and
the inputs waiting or running may hold at most ``max_queued_bytes`` (more is refused UNAVAILABLE,
as TF Serving refuses a task when its batch queue is full), so a few large requests cannot pile up
their inputs and activations beyond the pod's memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmtune.serving import signatures
from fmtune.serving.errors import Kind, ServingError, invalid
from fmtune.serving.limits import MAX_QUEUED_BYTES, MAX_REQUEST_ROWS, MAX_ROWS
from fmtune.serving.models import Servable, Signature
from fmtune.wire.contract import SIGNATURE

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


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

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.inputs.values())


def _merge_key(servable: Servable, name: str, inputs: Mapping[str, np.ndarray], outputs: tuple[str, ...]) -> Any:
    """Requests with equal keys can be stacked: same model, signature and outputs, same per-row shapes."""
    if not inputs or any(a.ndim == 0 for a in inputs.values()) or len({len(a) for a in inputs.values()}) != 1:
        return None
    return (id(servable), name, outputs, tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))


def _request_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """The rows a request asks for: its inputs' largest leading dimension (0 if all are scalars)."""
    return max((len(a) for a in inputs.values() if a.ndim), default=0)


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class Runner:
    def __init__(
        self,
        max_rows: int = MAX_ROWS,
        max_request_rows: int = MAX_REQUEST_ROWS,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        on_model_call: Callable[[int, float], None] | None = None,
    ):
        """``on_model_call(rows, seconds)`` hears of every call of a model (the server's metrics)."""
        self.max_rows, self.max_request_rows, self.max_queued_bytes = max_rows, max_request_rows, max_queued_bytes
        self._on_model_call = on_model_call
        self._queued_bytes = 0  # inputs of the jobs submitted and not yet answered
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: deque[_Job | None] = deque()  # taken from the queue but not yet run; runner thread only
        self._thread = threading.Thread(target=self._run, name="predict", daemon=True)
        self._thread.start()

    def submit(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        *,
        bounded: bool = True,
    ) -> Future[dict[str, np.ndarray]]:
        """Check the request (raising ``ServingError`` at once) and queue it. ``bounded`` False skips the
        queue's byte limit: a version's warmup must not fail because clients keep the queue full."""
        name = signature_name or SIGNATURE
        signature = servable.signature(name)
        outputs = tuple(output_filter)
        signatures.check(signature, inputs, outputs)
        if (rows := _request_rows(inputs)) > self.max_request_rows:
            raise invalid(f"Task size {rows} is larger than maximum input batch size {self.max_request_rows}")
        # A signature whose outputs are not one row per input row runs each request alone: a batch
        # of K requests could not be told from one request's ``[K]`` output.
        key = _merge_key(servable, name, inputs, outputs) if signature.batched else None
        job = _Job(signature, inputs, outputs, key)
        size = job.nbytes
        with self._lock:  # an empty queue takes any job: no limit can refuse every request
            if bounded and self._queued_bytes and self._queued_bytes + size > self.max_queued_bytes:
                raise ServingError(Kind.UNAVAILABLE, QUEUE_FULL)
            self._queued_bytes += size
        job.done.add_done_callback(lambda _: self._release(size))
        self._queue.put(job)
        return job.done

    def _release(self, size: int) -> None:
        with self._lock:
            self._queued_bytes -= size

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
                    job.done.set_result(self._execute(job))
                except BaseException as exc:  # the caller gets whatever went wrong; the runner goes on
                    job.done.set_exception(exc)

    def _execute(self, job: _Job) -> dict[str, np.ndarray]:
        """One job's outputs, from model calls of at most ``max_rows`` rows when its rows can be sliced."""
        if job.key is None or job.rows <= self.max_rows:
            return self._call(job.signature, job.inputs, job.output_filter)
        parts = []
        for start in range(0, job.rows, self.max_rows):
            part = {name: value[start : start + self.max_rows] for name, value in job.inputs.items()}
            parts.append(self._call(job.signature, part, job.output_filter))
        return _concatenate(parts)

    def _call(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = signatures.execute(signature, inputs, output_filter)
        if self._on_model_call is not None:
            self._on_model_call(_request_rows(inputs), time.perf_counter() - started)
        return outputs

    def _run_together(self, batch: list[_Job]) -> bool:
        """Run stacked inputs once and hand each job its rows; False if the batch must run apart."""
        first = batch[0]
        stacked = {name: np.concatenate([job.inputs[name] for job in batch]) for name in first.inputs}
        try:
            outputs = self._call(first.signature, stacked, first.output_filter)
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
