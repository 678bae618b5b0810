"""Fitting a run into a wall-clock budget (a lent GPU for a fixed time, a CPU session).

The learning-rate schedule needs the run's length up front, but the speed is only known
once training runs, and data workers may take a minute to start. So the step count is
set after ``PROBE_STEPS`` steps from the measured speed, and set again at each of
``REFIT_AT`` of the budget, and whenever the fitted end comes with a tenth of it left,
each time from the speed since the last fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROBE_STEPS = 50
REFIT_AT = (0.25, 0.5, 0.75)


@dataclass
class TimeBudget:
    """``seconds`` of budget from ``started`` (``time.monotonic()``); call :meth:`start`
    after the first step (warm-up is not timed), then :meth:`due` and :meth:`fit`."""

    seconds: float
    started: float
    window: tuple[int, float] | None = None  # (step, time) the speed is measured from
    first_fit: int = -1
    refits: list[float] = field(default_factory=lambda: list(REFIT_AT))

    def start(self, step: int, now: float) -> None:
        if self.window is None:
            self.window, self.first_fit = (step, now), step + PROBE_STEPS

    def due(self, step: int, total_steps: int, now: float) -> bool:
        """Whether to fit the step count at ``step``."""
        if self.window is None:
            return False
        elapsed = now - self.started
        return step == self.first_fit or (step >= self.window[0] + PROBE_STEPS and (
            bool(self.refits and elapsed > self.seconds * self.refits[0])
            or (step >= total_steps and elapsed < 0.9 * self.seconds)))

    def fit(self, step: int, now: float, most: int) -> tuple[int, float]:
        """The step count (at most ``most``) that ends the run on time at the speed since the
        last fit, and that speed in steps/s; 5 % is kept for validation and checkpoints."""
        assert self.window is not None, "start() first"
        while self.refits and now - self.started > self.seconds * self.refits[0]:
            self.refits.pop(0)
        from_step, from_time = self.window
        rate = (step - from_step) / max(now - from_time, 1e-9)
        fits = step + int(rate * (self.seconds - (now - self.started)) * 0.95)
        self.window = (step, now)
        return max(step, min(most, fits)), round(rate, 2)
