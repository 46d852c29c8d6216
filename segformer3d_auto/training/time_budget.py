"""``--time-budget``: fit the number of epochs to the time a user can afford.

The first epochs are measured, then the number of epochs is fixed so that training plus the final validation
ends within the budget. When the measured speed drifts by more than :data:`REPLAN_CHANGE` from the one the plan was
made with (a shared machine getting busier or quieter), or when the epochs that fit in the remaining time differ from
the plan by more than a slack (:data:`PLAN_TOLERANCE` of the epochs still to run, so none near the end; at least
:data:`SURPLUS_EPOCHS` for a longer plan), the number is re-estimated and the log says so. Both estimates (time
per epoch, final validation) are medians of the last :data:`SPEED_WINDOW` measurements, so one pass slowed by a
passing load does not move the plan. A re-plan never stops the run right after an epoch that was not planned as its
last: that epoch ran mid-schedule, so one more epoch runs at the annealed learning rate (see
:func:`segformer3d_auto.training.schedule.next_learning_rate`), even where it may end past the budget.

The clock (``--budget-clock``, :data:`CLOCKS`) is the process's monotonic clock, or its CPU time: a benchmark on a
shared machine gives each run the same CPU seconds however busy the machine gets. What a run has spent is stored in
its checkpoints, so ``--continue`` goes on with the time that was left when the checkpoint was written (epochs lost
to a crash are redone, the idle time between the crash and the restart is not counted).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

MEASURE_EPOCHS = 2
REPLAN_CHANGE = 0.2
SPEED_WINDOW = 3
MARGIN_EPOCHS = 0.5
PLAN_TOLERANCE = 0.2
"""Share of the epochs still to run by which what fits may differ from the plan before it is re-estimated."""
SURPLUS_EPOCHS = 2
"""The fewest spare whole epochs (beyond the margin) that lengthen the plan although the speed changed by less than
:data:`REPLAN_CHANGE`. Before the slack and this rule, each epoch that happened to run slow shortened the
plan and none lengthened it: ``sf3d_train --time-budget 300`` ended 17-42 s early on three datasets of
``benchmarks/compare_nnunet.py``."""
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.monotonic, "cpu": time.process_time}
"""What a budget counts: wall-clock seconds, or the CPU seconds of the training process (all its threads, from the
process's start; data-loading worker processes are not counted, so ``--num-workers 0`` counts everything)."""


def parse_duration(text: str) -> float:
    """Seconds in ``"2h"``, ``"45m"``, ``"90s"``, ``"1h30m"`` or a bare number of seconds (``"600"``).

    Raises:
        ValueError: anything else, or a duration that is not positive.
    """
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", value)
        if not parts or "".join(n + u for n, u in parts) != value or len({u for _, u in parts}) != len(parts):
            raise ValueError(f"time budget {text!r}: expected e.g. 2h, 45m, 90s or 1h30m")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise ValueError(f"time budget {text!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """``3725.0 -> "1h02m05s"``, ``95.4 -> "1m35s"``, ``42.0 -> "42s"`` (for log lines)."""
    s = int(round(seconds))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def plan_epochs(epochs_done: int, remaining_s: float, epoch_s: float, validation_s: float, max_epochs: int) -> int:
    """Total number of epochs that fit: the ones done plus as many whole epochs of ``epoch_s`` as the remaining
    time holds once ``validation_s`` and :data:`MARGIN_EPOCHS` of an epoch are set aside (the margin absorbs the
    jitter of a shared machine, so that the plan rarely has to shrink in its last epochs, when the learning rate
    could no longer anneal); never fewer than ``epochs_done`` (at least 1), never more than ``max_epochs``.
    """
    if epoch_s <= 0 or validation_s < 0 or max_epochs < 1 or epochs_done < 0:
        raise ValueError(f"bad plan arguments: epoch_s={epoch_s}, validation_s={validation_s}, "
                         f"max_epochs={max_epochs}, epochs_done={epochs_done}")
    more = max(0, math.floor((remaining_s - validation_s) / epoch_s - MARGIN_EPOCHS))
    return max(1, epochs_done, min(max_epochs, epochs_done + more))


def plan_slack(planned_epochs: int, epochs_done: int) -> int:
    """Epochs by which the plan may differ from what fits before it is re-estimated: a share
    (:data:`PLAN_TOLERANCE`) of the epochs still to run, so that the jitter of a shared machine does not move a long
    plan back and forth, and none once the end is near, where the budget must hold."""
    return math.floor(PLAN_TOLERANCE * max(planned_epochs - epochs_done, 0))


def recent_median(values: Sequence[float]) -> float:
    """The median of the last :data:`SPEED_WINDOW` measurements: the current time per epoch or final validation,
    unmoved by one slow outlier."""
    if not values:
        raise ValueError("nothing measured yet")
    return float(statistics.median(list(values)[-SPEED_WINDOW:]))


class TimeBudget:
    """The budget of one run and its plan.

    Args:
        total_s: the budget in seconds.
        max_epochs: upper bound on the epochs (``--epochs`` when given).
        spent_s: time already spent by earlier runs of the same training (from the checkpoint).
        clock: seconds from a monotonic clock; tests pass their own.
        started: the clock's reading when this process started working on the run (default: now).
    """

    def __init__(self, total_s: float, max_epochs: int, spent_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, started: float | None = None) -> None:
        if not total_s > 0 or max_epochs < 1 or spent_s < 0:
            raise ValueError(f"bad time budget: total_s={total_s}, max_epochs={max_epochs}, spent_s={spent_s}")
        self.total_s = float(total_s)
        self.max_epochs = int(max_epochs)
        self.clock = clock
        self._spent_before = float(spent_s)
        self._started = clock() if started is None else float(started)
        self._last_mark = self._started
        self._starting = True  # the first epoch of a process also pays for start-up: not a speed sample
        self.durations: list[float] = []
        self.validation_estimates: list[float] = []
        self.planned_epochs: int | None = None
        self.planned_epoch_s: float | None = None

    def begin_training(self) -> None:
        """Call when the epochs start: what came before (imports, network, data loaders) is spent time but not
        part of the first epoch's duration."""
        self._last_mark = self.clock()

    def elapsed(self) -> float:
        """Seconds of the budget used so far, earlier runs included."""
        return self._spent_before + self.clock() - self._started

    def remaining(self) -> float:
        """Seconds left (negative once overrun)."""
        return self.total_s - self.elapsed()

    def end_epoch(self, epochs_done: int, validation_s: float) -> tuple[int, str | None]:
        """Record that an epoch ended now, with ``validation_s`` the final validation as estimated from this
        epoch's pseudo-Dice pass, and return ``(number of epochs, log message or None)``.

        The number is the provisional ``max_epochs`` during the first :data:`MEASURE_EPOCHS` epochs (unless the
        budget already runs short), then the plan; the message says after which epoch, why and how the plan was
        made or changed.
        """
        now = self.clock()
        duration, self._last_mark = now - self._last_mark, now
        if self._starting:
            self._starting = False
        else:
            self.durations.append(duration)
        self.validation_estimates.append(float(validation_s))
        epoch_s = recent_median(self.durations or [duration])
        validation_s = self.validation_estimate()
        fits = plan_epochs(epochs_done, self.remaining(), epoch_s, validation_s, self.max_epochs)
        left = f"{format_duration(max(self.remaining(), 0))} of {format_duration(self.total_s)} left"
        after = f"after epoch {epochs_done - 1}"  # numbered from 0, as in the log's epoch lines
        planned = self.planned_epochs
        if planned is None:
            if not self.durations and fits >= MEASURE_EPOCHS:
                return self.max_epochs, None
            why = f"{epoch_s:.1f}s per epoch, final validation estimated at {validation_s:.1f}s, {left}: training"
        elif abs(epoch_s - self.planned_epoch_s) > REPLAN_CHANGE * self.planned_epoch_s:
            change = 100 * (epoch_s / self.planned_epoch_s - 1)
            why = (f"{after} speed changed by {change:+.0f}% ({self.planned_epoch_s:.1f}s -> "
                   f"{epoch_s:.1f}s per epoch), {left}: re-estimated {planned} ->")
        elif fits < planned - plan_slack(planned, epochs_done):
            why = (f"{after}: {left} no longer holds {planned} epochs at {epoch_s:.1f}s per epoch + "
                   f"{validation_s:.1f}s final validation: re-estimated {planned} ->")
        elif fits >= planned + max(SURPLUS_EPOCHS, plan_slack(planned, epochs_done)):
            why = (f"{after}: {left} holds {fits - planned} epochs more than planned at {epoch_s:.1f}s per epoch + "
                   f"{validation_s:.1f}s final validation: re-estimated {planned} ->")
        else:
            return planned, None
        note = ""
        if planned is not None and fits <= epochs_done < planned:  # the epoch just done ran mid-schedule
            fits, note = epochs_done + 1, " (one more than fits: the last epoch runs at the annealed learning rate)"
        self.planned_epochs, self.planned_epoch_s = fits, epoch_s
        return fits, f"time budget: {why} {fits} epochs{note}"

    def validation_estimate(self) -> float:
        """The final validation's duration as the plan sees it: the median of the recent estimates (0 before any)."""
        return recent_median(self.validation_estimates) if self.validation_estimates else 0.0

    def state_dict(self) -> dict[str, Any]:
        """What ``--continue`` needs: the budget, the time spent and the plan (plain numbers)."""
        return {"total_s": self.total_s, "spent_s": self.elapsed(), "planned_epochs": self.planned_epochs,
                "planned_epoch_s": self.planned_epoch_s, "durations": list(self.durations),
                "validation_estimates": list(self.validation_estimates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a budget from a checkpoint: the time it had spent and its plan; the clock restarts now."""
        self._spent_before = float(state.get("spent_s", 0.0))
        self._started = self._last_mark = self.clock()
        self._starting = True
        self.planned_epochs = state.get("planned_epochs")
        self.planned_epoch_s = state.get("planned_epoch_s")
        self.durations = [float(d) for d in state.get("durations", [])]
        self.validation_estimates = [float(v) for v in state.get("validation_estimates", [])]


def validation_forward_passes(case_shapes: Sequence[Sequence[int]], patch_size: Sequence[int],
                              num_mirror_axes: int) -> int:
    """Network forward passes (one patch each) that the final validation's sliding window makes: half-patch
    steps (the predictor's default) over each case padded to at least a patch, times ``2 ** num_mirror_axes``
    mirror combinations."""
    from segformer3d_auto.inference.sliding_window import compute_steps

    total = 0
    for shape in case_shapes:
        padded = [max(int(s), int(p)) for s, p in zip(shape, patch_size)]
        total += math.prod(len(steps) for steps in compute_steps(padded, patch_size, 0.5))
    return total * 2 ** num_mirror_axes
