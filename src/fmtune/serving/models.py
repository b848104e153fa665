"""Model versions on disk -> loaded servables, with TF Serving's default policy: serve the latest.

The repository is polled. A version is loaded only once its directory has looked the same on two
polls in a row (so a half-copied directory is never loaded); the new version becomes AVAILABLE
before the old one is unloaded, so requests never find the model missing during a swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmtune.serving.errors import Kind, ServingError, invalid
from fmtune.wire.contract import VERSION_NAME

log = logging.getLogger("fmtune")

SETTLE_SECONDS = 2.0
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50
STATE_NAMES = {START: "START", LOADING: "LOADING", AVAILABLE: "AVAILABLE", UNLOADING: "UNLOADING", END: "END"}


@dataclass(frozen=True)
class Signature:
    """A loaded signature with what every request is checked against, read from TensorFlow once.

    ``batched``: every input and output has a leading batch dimension of any size, so requests can
    be stacked into one run and its outputs split back by rows. Not so for ``fmtune_card``, whose
    outputs are one ``[K]`` and one scalar whatever the batch: those requests run alone.
    """

    fn: Any
    inputs: dict[str, Any]  # name -> tf.TensorSpec
    outputs: tuple[str, ...]
    batched: bool = False

    @classmethod
    def of(cls, fn: Any) -> Signature:
        inputs, outputs = dict(fn.structured_input_signature[1]), fn.structured_outputs
        specs = [*inputs.values(), *outputs.values()]
        batched = all(s.shape.rank is not None and s.shape.rank >= 1 and s.shape[0] is None for s in specs)
        return cls(fn, inputs, tuple(sorted(outputs)), batched)


@dataclass
class Servable:
    version: int
    path: Path
    state: int = START
    error: str = ""
    loaded: Any = field(default=None, repr=False)
    signature_defs: Any = field(default=None, repr=False)  # tensorflow.MetaGraphDef.signature_def
    signatures: dict[str, Signature] = field(default_factory=dict, repr=False)

    def signature(self, name: str) -> Signature:
        if name not in self.signatures:
            raise ServingError(Kind.FAILED_PRECONDITION, f'Serving signature name: "{name}" not found in signature def')
        return self.signatures[name]


def _snapshot(path: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        return tuple(
            sorted(
                (str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                for f in path.rglob("*")
                if f.is_file()
            )
        )
    except OSError:  # the directory changed while we looked
        return ()


def load_servable(servable: Servable) -> None:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((servable.path / "saved_model.pb").read_bytes())
    servable.signature_defs = proto.meta_graphs[0].signature_def
    servable.loaded = tf.saved_model.load(str(servable.path))
    servable.signatures = {name: Signature.of(fn) for name, fn in servable.loaded.signatures.items()}


class ModelManager:
    """``warmup`` runs on each newly loaded servable before it is AVAILABLE; if it raises, the
    version ends in END like any version that fails to load."""

    def __init__(
        self,
        base_path: Path,
        name: str,
        poll_seconds: float = 1.0,
        warmup: Callable[[Servable], None] | None = None,
    ):
        self.base_path, self.name, self.poll_seconds = Path(base_path), name, poll_seconds
        self.warmup = warmup
        self._servables: dict[int, Servable] = {}
        self._seen: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._failed: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded whatever the disk does
                log.exception("model poll failed")
            self._stop.wait(self.poll_seconds)

    def _ready_versions(self) -> dict[int, Path]:
        """Versions whose directory holds a SavedModel and has settled: unchanged since the last poll,
        or untouched for ``SETTLE_SECONDS`` (so versions already there at start load at once)."""
        ready: dict[int, Path] = {}
        current: dict[int, tuple[tuple[str, int, int], ...]] = {}
        if self.base_path.is_dir():
            for path in self.base_path.iterdir():
                if VERSION_NAME.fullmatch(path.name) and path.is_dir() and (path / "saved_model.pb").is_file():
                    snap = _snapshot(path)
                    current[int(path.name)] = snap
                    settled = snap and time.time_ns() - max(m for _, _, m in snap) > SETTLE_SECONDS * 1e9
                    if snap and (self._seen.get(int(path.name)) == snap or settled):
                        ready[int(path.name)] = path
        self._seen = current
        return ready

    def poll_once(self) -> None:
        ready = self._ready_versions()
        for version in [v for v in self._servables if v not in self._seen]:
            self._unload(version, "removed from disk")
        candidates = [v for v in ready if self._failed.get(v) != self._seen.get(v)]
        if not candidates:
            return
        latest = max(candidates)
        current = self.latest()
        if current is not None and current.version >= latest:
            return
        self._load(latest, ready[latest])

    def _load(self, version: int, path: Path) -> None:
        servable = Servable(version, path, state=LOADING)
        with self._lock:
            self._servables[version] = servable
        log.info("loading %s version %d from %s", self.name, version, path)
        try:
            load_servable(servable)
            if self.warmup is not None:
                self.warmup(servable)
        except Exception:  # a broken SavedModel must not take the server down
            # Clients see that it failed; what failed, with its paths, goes to the log only.
            servable.state, servable.loaded, servable.signatures = END, None, {}
            servable.error = f"version {version} could not be loaded (see the server log)"
            self._failed[version] = self._seen.get(version, ())
            log.exception("could not load %s version %d from %s", self.name, version, path)
            return
        with self._lock:
            servable.state = AVAILABLE
            older = [v for v, s in self._servables.items() if v != version and s.state == AVAILABLE]
        log.info("%s version %d is AVAILABLE", self.name, version)
        for old in older:
            self._unload(old, f"version {version} replaced it")

    def _unload(self, version: int, why: str) -> None:
        with self._lock:
            servable = self._servables.get(version)
            if servable is None or servable.state == END:
                return
            servable.state = UNLOADING
        log.info("unloading %s version %d (%s)", self.name, version, why)
        with self._lock:
            # A fresh record, not a cleared one: requests that already resolved this version keep
            # their reference and finish; the model is freed when the last of them is done.
            self._servables[version] = Servable(version, servable.path, state=END)

    def latest(self) -> Servable | None:
        with self._lock:
            available = [s for s in self._servables.values() if s.state == AVAILABLE]
        return max(available, key=lambda s: s.version) if available else None

    def resolve(self, name: str, version: int | None, label: str | None = None) -> Servable:
        """The servable a request means, or NOT_FOUND as TF Serving words it."""
        if name != self.name:
            raise ServingError(Kind.NOT_FOUND, f"Servable not found for request: Latest({name})")
        if label:
            raise invalid(f"Unrecognized servable version label: {label}")
        if version is None:
            servable = self.latest()
            if servable is None:
                raise ServingError(Kind.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return servable
        with self._lock:
            servable = self._servables.get(version)
        if servable is None or servable.state != AVAILABLE:
            raise ServingError(Kind.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
        return servable

    def statuses(self, name: str, version: int | None) -> list[Servable]:
        if name != self.name:
            raise ServingError(Kind.NOT_FOUND, f"Could not find any versions of model {name}")
        with self._lock:
            found = sorted(self._servables.values(), key=lambda s: -s.version)
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise ServingError(Kind.NOT_FOUND, f"Could not find version {version} of model {name}")
        if not found:
            raise ServingError(Kind.NOT_FOUND, f"Could not find any versions of model {name}")
        return found
