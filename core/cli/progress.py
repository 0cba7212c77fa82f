"""The progress line ``train`` draws on a terminal."""
from __future__ import annotations

import time

from core.timefmt import fmt_time
from core.training import StepEvent


class ProgressBar:
    """One self-rewriting terminal line: epoch, step, loss, steps per second, time left."""

    def __init__(self, stream, total_steps: int, epochs: int, width: int = 24):
        self.stream, self.total, self.epochs, self.width = stream, total_steps, epochs, width
        self.t0 = time.monotonic()
        self.last_draw = 0.0

    def update(self, ev: StepEvent, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < 0.1 and ev.step + 1 < self.total:
            return  # redraw at most 10 times a second
        self.last_draw = now
        done = ev.step + 1
        rate = done / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] epoch {ev.epoch + 1}/{self.epochs} step {done}/{self.total}"
                          f"  loss {ev.loss:.4f}  {rate:.1f} steps/s  left {fmt_time(left)} ")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width + 70) + "\n")
        self.stream.flush()
