"""What every sub-command shares: its errors, its one-line messages, a valid graph."""
from __future__ import annotations

import argparse
import re

from core.errors import NeuroCanvasError

PROG = "neurocanvas"


class UsageError(NeuroCanvasError):
    """A bad command-line option."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2, like every other
    user error (docs/format.md section 6), instead of a usage dump."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def one_line(message: str) -> str:
    """``message`` with control characters (a newline inside a node id or type read from a
    file) escaped, so an error stays the one line docs/format.md section 6 promises."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


def graph_seed(a) -> int:
    """The graph's training seed, or 0 when it has none (or an unusable one)."""
    seed = a.graph.training.get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
