"""How retraining paces its epochs: each epoch's metrics and time, a warm-up and cosine learning
rate, and a plan of how many epochs fit before a deadline (``EpochPlan``)."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import keras

from fmtune.text import format_metrics
from fmtune.trials import Epoch

log = logging.getLogger("fmtune")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch, for terminals and ``kubectl logs``; and each epoch to ``on_epoch`` (the
    run's state, so the dashboard draws retraining as it goes)."""

    def __init__(self, label: str, epochs: int, on_epoch: Callable[[Epoch], None] | None = None):
        super().__init__()
        self.label, self.epochs, self.on_epoch = label, epochs, on_epoch
        self.history: list[Epoch] = []
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        metrics: dict[str, float | None] = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(Epoch(epoch=epoch, metrics=metrics))
        self.seconds.append(time.monotonic() - self._started)
        log.info(
            "%s epoch %d/%d: %s (%.1fs)",
            self.label,
            epoch + 1,
            self.epochs,
            format_metrics(metrics),
            self.seconds[-1],
            extra={"epoch": epoch + 1, "metrics": metrics, "seconds": round(self.seconds[-1], 3)},
        )
        if self.on_epoch is not None:
            self.on_epoch(self.history[-1])


def cosine_rate(step: int, base: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at ``step``: linear warm-up to ``base``, then cosine decay to zero.

    >>> [round(cosine_rate(s, 1.0, 2, 6), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine(keras.callbacks.Callback):
    """Sets the optimiser's learning rate before every batch: a linear warm-up to ``base``, then a
    cosine decay that reaches zero at ``total_steps``. ``replan`` moves that end when the plan
    changes (``EpochPlan``): the decay goes on from the rate reached, so the rate never jumps and
    never rises, whether the plan grows or shrinks."""

    def __init__(self, base: float, warmup_steps: int, total_steps: int):
        super().__init__()
        self.base, self.warmup_steps, self.total_steps = base, warmup_steps, total_steps
        self.step = 0
        self._from_step, self._from_rate = warmup_steps, base  # where the current decay began

    def rate(self, step: int) -> float:
        """The rate at ``step`` under the current plan.

        >>> schedule = WarmupCosine(1.0, warmup_steps=0, total_steps=4)
        >>> schedule.step = 2; schedule.replan(6)  # halfway at 0.5, then four more steps to zero
        >>> [round(schedule.rate(s), 3) for s in range(2, 7)]
        [0.5, 0.427, 0.25, 0.073, 0.0]
        """
        if step < self.warmup_steps:
            return cosine_rate(step, self.base, self.warmup_steps, self.total_steps)
        return cosine_rate(step - self._from_step, self._from_rate, 0, self.total_steps - self._from_step)

    def replan(self, total_steps: int) -> None:
        if self.step > self._from_step:
            self._from_step, self._from_rate = self.step, self.rate(self.step)
        self.total_steps = total_steps

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.model.optimizer.learning_rate.assign(self.rate(self.step))
        self.step += 1


def typical_epoch(seconds: Iterable[float]) -> float | None:
    """The typical cost of an epoch among ``seconds``: their median (None for none).

    >>> typical_epoch([4.0, 4.2, 3.9, 9.0])
    4.1
    """
    values = list(seconds)
    return statistics.median(values) if values else None


class EpochPlan(keras.callbacks.Callback):
    """Ends training after the planned steps: ``max_epochs`` of them, or under a deadline as many
    as fit before it with ``reserve_epochs`` (the final evaluation, in epochs) to spare.

    The plan is made again after every epoch from the recent epochs' median cost, leaving out the
    first, which also builds and traces the model. A host that slows down gets a shorter plan, and
    one that speeds up a longer one: retraining's first epochs can share the cores with workers
    still finishing their last trials, and a plan kept from them left minutes unused
    (reports/accuracy.md). The schedule's decay is moved with the plan (``WarmupCosine.replan``),
    so it still ends at zero with the last step.

    The plan counts steps, so its last epoch may be cut short: where an epoch takes minutes, whole
    epochs left up to one of them unused (reports/search-centre.md, standard on a slow host). Once an
    epoch has been timed, training also stops at the step where the deadline, less the reserve,
    has come, however much the host slowed within the epoch."""

    def __init__(
        self,
        max_epochs: int,
        deadline: float | None,
        schedule: WarmupCosine | None,
        steps_per_epoch: int,
        reserve_epochs: float = 0.0,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.max_epochs, self.deadline, self.schedule, self.clock = max_epochs, deadline, schedule, clock
        self.steps_per_epoch, self.reserve_epochs = steps_per_epoch, reserve_epochs
        self.planned_steps = max_epochs * steps_per_epoch
        self.steps = 0
        self._started = 0.0
        self._seconds: list[float] = []
        self._stop_at = math.inf  # the clock at which a step ends training: the deadline less the reserve

    @property
    def planned(self) -> int:
        """The epochs planned, the last of them perhaps cut short."""
        return math.ceil(self.planned_steps / self.steps_per_epoch)

    @property
    def last_epoch_share(self) -> float:
        """The share of its steps the last epoch ran (1.0 unless it was cut short)."""
        part = self.steps % self.steps_per_epoch
        return part / self.steps_per_epoch if part else 1.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = self.clock()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps += 1
        if self.steps >= self.planned_steps or self.clock() >= self._stop_at:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.model.stop_training:  # the plan's last step, or the deadline, came in this epoch
            return
        now = self.clock()
        self._seconds.append(now - self._started)
        if self.deadline is not None:  # a plan with no room for another step ends at this epoch
            recent = typical_epoch(self._seconds[1:][-3:] or self._seconds)
            assert recent is not None
            self._stop_at = self.deadline - self.reserve_epochs * recent
            self._plan(epoch, now, self.deadline, recent)
        if self.steps >= self.planned_steps:
            self.model.stop_training = True

    def _plan(self, epoch: int, now: float, deadline: float, cost: float) -> None:
        done = self.steps
        fits = int(((deadline - now) / cost - self.reserve_epochs) * self.steps_per_epoch)
        planned = max(done, min(self.max_epochs * self.steps_per_epoch, done + fits))
        if planned == self.planned_steps:
            return
        self.planned_steps = planned
        if self.schedule is not None:
            self.schedule.replan(planned)
        log.info(
            "retrain: epoch %d took %.1fs; %.1f epoch(s) in all fit in the %.0fs left",
            epoch + 1,
            self._seconds[-1],
            planned / self.steps_per_epoch,
            deadline - now,
        )
