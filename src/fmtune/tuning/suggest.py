"""Bayesian suggestions computed in the background, so no RPC waits behind a Gaussian-process fit.

Keras Tuner fits its GP (21 optimiser starts) and runs 50 L-BFGS-B starts of the acquisition on
every create-trial call, under the oracle's lock: seconds per call at 200 trials, during which no
heartbeat or report is answered. Here one thread does that work, with Keras Tuner's encoding of
the space and its GP (Matern 5/2, normalised targets, running trials counted with its pessimistic
fantasy mean + std) but cheaper steps and two changes to the model, each of which found better
values in fewer trials than Keras Tuner on the efficiency benchmark (reports/efficiency.md):

- the kernel has a length scale per hyperparameter (Keras Tuner's has one for all), so the GP
  learns that some hyperparameters matter more than others;
- the acquisition is expected improvement, not Keras Tuner's lower confidence bound with beta
  2.6, which right after the random phase mostly probes the edges of the box, where the GP is
  least sure, rather than improving on the best result.

Cheaper steps:

- the GP's kernel parameters are re-optimised after every result while there are few, then only
  when the data grew by a quarter, from the last kernel and for a bounded number of steps, on a
  thread of their own while the picks go on; otherwise a refit is one Cholesky factorisation;
- the acquisition is scored on random points and on points around the best results at once,
  then on ever closer neighbourhoods of the best few, all vectorised;
- one fit serves several workers: each pick is added as a pending point before the next one is
  chosen, as Keras Tuner does for trials already running.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("fmtune")
CANDIDATES = 500
INCUMBENTS, INCUMBENT_RADIUS = 3, 0.05  # candidates are also drawn this close to the best results
KEPT = 5
NEIGHBOURS = 100
RESTARTS = 3  # random restarts of a kernel optimisation; 1 once there are FEW results
FEW = 50  # below this many results the kernel is re-optimised on every new one
REFIT_GROWTH = 1.25
LENGTH_SCALES = (0.05, 20.0)


@dataclass
class Observations:
    """What suggestions are computed from: completed points (minimisation scores), running ones,
    and how many workers are there to ask for more."""

    x: np.ndarray
    y: np.ndarray
    pending: np.ndarray
    workers: int = 1
    enough: bool = True  # past the random initial points

    @property
    def dimensions(self) -> int:
        return int(self.x.shape[1])

    @property
    def completed(self) -> int:
        return len(self.x)


@dataclass
class Suggestion:
    point: np.ndarray
    completed: int  # results it was computed from


def _optimise_briefly(obj_func: Any, initial_theta: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """The GP's kernel optimiser, capped: from the last kernel (or a random restart) few steps do."""
    from scipy.optimize import minimize

    result = minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 25})
    return result.x, float(result.fun)


def _clean(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nan_to_num(x, posinf=0, neginf=0), np.nan_to_num(y, posinf=0, neginf=0)


class GPSuggester:
    """Picks points in [0, 1]^d (Keras Tuner's encoding of a search space) from observations."""

    def __init__(self, alpha: float, seed: int):
        self.alpha = alpha
        self.rng = np.random.RandomState(seed)
        self._kernel: Any = None
        self._fitted_at = 0  # observations at the last kernel optimisation

    def _gp(self, optimise: bool, dimensions: int = 1) -> Any:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import Matern

        # One length scale per hyperparameter, bounded below: in Keras Tuner's [0, 1] encoding a
        # scale under 0.05 means "every point unrelated to its neighbours", which few points can
        # fake and which turns the search random.
        initial = Matern(length_scale=np.ones(dimensions), length_scale_bounds=LENGTH_SCALES, nu=2.5)
        return GaussianProcessRegressor(
            kernel=self._kernel if self._kernel is not None else initial,
            n_restarts_optimizer=(RESTARTS if self._fitted_at < FEW else 1) if optimise else 0,
            optimizer=_optimise_briefly if optimise else None,
            normalize_y=True,
            alpha=self.alpha,
            random_state=self.rng,
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        """The GP on this data, with the kernel as last tuned (tuned now if it never was)."""
        if self._kernel is None:
            self.tune_kernel(x, y)
        return self._gp(optimise=False).fit(x, y)

    def kernel_is_stale(self, completed: int) -> bool:
        if self._kernel is None:
            return True
        return completed != self._fitted_at if completed < FEW else completed >= REFIT_GROWTH * self._fitted_at

    def tune_kernel(self, x: np.ndarray, y: np.ndarray) -> None:
        """Optimise the kernel's parameters (the costly part of a fit, so done when nobody waits)."""
        gp = self._gp(optimise=True, dimensions=x.shape[1]).fit(*_clean(x, y))
        self._kernel, self._fitted_at = gp.kernel_, len(x)

    def _best_point(self, gp: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Expected improvement's maximum over the best result ``y.min()``: scored on random points
        and points near the best results, then on ever closer neighbourhoods of the best few
        (vectorised; per-point optimisers cost far more in Python)."""
        from scipy.stats import norm

        best_y, dimensions = float(np.min(y)), x.shape[1]

        def negative_ei(points: np.ndarray) -> np.ndarray:
            mu, sigma = gp.predict(points, return_std=True)
            sigma = np.maximum(sigma, 1e-12)
            gain = best_y - mu
            z = gain / sigma
            return np.asarray(-(gain * norm.cdf(z) + sigma * norm.pdf(z)))

        incumbents = x[np.argsort(y)[:INCUMBENTS]]
        near = incumbents[self.rng.randint(len(incumbents), size=NEIGHBOURS)]
        points = np.vstack(
            [
                self.rng.uniform(0, 1, size=(CANDIDATES, dimensions)),
                np.clip(near + self.rng.normal(0, INCUMBENT_RADIUS, near.shape), 0, 1),
            ]
        )
        scores = negative_ei(points)
        for radius in (0.1, 0.03, 0.01):
            kept = np.argsort(scores)[:KEPT]
            steps = self.rng.normal(0, radius, (NEIGHBOURS, dimensions))
            around = np.clip(points[kept][self.rng.randint(KEPT, size=NEIGHBOURS)] + steps, 0, 1)
            points, scores = np.vstack([points[kept], around]), np.concatenate([scores[kept], negative_ei(around)])
        return points[int(np.argmin(scores))]

    def picks(self, obs: Observations, pending: list[np.ndarray]) -> Iterator[np.ndarray]:
        """Points one after another, each chosen with the earlier ones, the running trials and
        ``pending`` counted as running."""
        x, y = _clean(obs.x, obs.y)
        base = self.fit(x, y)
        pending = [*obs.pending, *pending]
        while True:
            gp = base
            if pending:  # Keras Tuner's fantasy for a running trial: the model's mean + std
                p = np.array(pending)
                mu, sigma = base.predict(p, return_std=True)
                gp = self._gp(optimise=False).fit(np.vstack([x, p]), np.concatenate([y, mu + sigma]))
            point = self._best_point(gp, x, y)
            pending.append(point)
            yield point


_blas_lock = threading.Lock()
_blas_limited = False


def single_threaded_blas() -> None:
    """Small matrices: more BLAS threads would only fight the workers for cores; and noisy scores
    (a length scale at its bound) are normal, not worth a warning per fit. Both are set once for
    the process and never changed back: kernel fits run on threads of their own, and changing
    OpenBLAS's thread count while another thread is inside it can deadlock it (threadpoolctl#205)."""
    global _blas_limited
    with _blas_lock:
        if _blas_limited:
            return
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        threadpool_limits(1)
        _blas_limited = True


class SuggestionQueue:
    """Suggestions made ahead by a background thread, one per worker, so that a worker asking for
    a trial usually finds one ready. ``take`` waits without any lock of the oracle's.

    A suggestion is handed out only if it misses no more results than there are trials running:
    with one worker it always reflects every result; with N it is as recent as N parallel trials
    let any suggestion be. New results interrupt a batch, which starts again from a fresh fit.
    ``observe`` snapshots the data (under the oracle's lock).
    """

    def __init__(self, suggester: GPSuggester, observe: Callable[[], Observations]):
        self.suggester, self.observe = suggester, observe
        self._ready: list[Suggestion] = []
        self._waiting = 0
        self._target = 1
        self._results = 0  # calls of ``changed`` so far
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._tuning: threading.Thread | None = None
        self._stop = False

    def changed(self) -> None:
        """New results are in."""
        with self._cond:
            self._results += 1
            self._cond.notify_all()

    def take(self, completed: int, running: int, timeout: float) -> np.ndarray | None:
        """The next fresh-enough suggestion (see the class docstring); computed right here when no
        background thread runs."""
        if self._thread is None:
            with self._cond:
                self._drop_stale(completed - running)
                if self._ready:
                    return self._ready.pop(0).point
            obs = self.observe()
            single_threaded_blas()
            if self.suggester.kernel_is_stale(obs.completed):
                self.suggester.tune_kernel(obs.x, obs.y)
            return next(self.suggester.picks(obs, []))
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            try:
                while True:
                    if self._drop_stale(completed - running):
                        self._cond.notify_all()  # what was dropped has to be made again
                    if self._ready:
                        return self._ready.pop(0).point
                    left = deadline - time.monotonic()
                    if self._stop or left <= 0:
                        return None
                    self._cond.wait(left)
            finally:
                self._waiting -= 1

    def give_back(self, point: np.ndarray, completed: int) -> None:
        with self._cond:
            self._ready.insert(0, Suggestion(point, completed))
            self._cond.notify_all()

    def _drop_stale(self, oldest: int) -> int:
        """Drop suggestions made from fewer than ``oldest`` results; how many were dropped."""
        kept = [s for s in self._ready if s.completed >= oldest]
        dropped, self._ready = len(self._ready) - len(kept), kept
        return dropped

    def _wanted(self) -> int:
        return max(self._waiting, self._target) - len(self._ready)

    def _batch(self) -> None:
        """Fill the queue from one fit, until it is full or new results come in."""
        with self._cond:
            results = self._results
        obs = self.observe()
        with self._cond:
            if not obs.enough:  # nothing to fit yet
                self._cond.wait_for(lambda: self._stop or self._results != results)
                return
            self._target = max(1, obs.workers)
            self._drop_stale(obs.completed - len(obs.pending))
            ready = [s.point for s in self._ready]
        for point in self.suggester.picks(obs, ready):
            with self._cond:
                self._ready.append(Suggestion(point, obs.completed))
                self._cond.notify_all()
                if self._stop or self._results != results or self._wanted() <= 0:
                    break
        tuning = self._tuning
        if self.suggester.kernel_is_stale(obs.completed) and (tuning is None or not tuning.is_alive()):
            # On its own thread: picks go on with the last kernel meanwhile (the linear algebra
            # releases the GIL), and the next fit takes the new one.
            self._tuning = threading.Thread(
                target=self.suggester.tune_kernel, args=(obs.x, obs.y), name="bayesian-kernel", daemon=True
            )
            self._tuning.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._wanted() > 0)
                if self._stop:
                    return
            try:
                self._batch()
            except Exception:  # a degenerate fit must not end the search: a random point instead
                log.exception("Bayesian suggestion failed; using a random point")
                # Observed outside the condition: the oracle calls in here holding its own lock.
                point = self.suggester.rng.uniform(0, 1, self.observe().dimensions)
                with self._cond:
                    self._ready.append(Suggestion(point, completed=sys.maxsize))  # never stale
                    self._cond.notify_all()

    def start(self) -> None:
        single_threaded_blas()
        self._thread = threading.Thread(target=self._loop, name="bayesian-suggester", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
