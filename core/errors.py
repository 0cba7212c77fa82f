"""Typed errors a user can cause.

Every error names what is wrong (a file, node, port, parameter or field) so the GUI can mark
it on the canvas and the command line can print it in one line. ``str(err)`` is that line.
"""
from __future__ import annotations


class NeuroCanvasError(Exception):
    """Base of every error a user can cause. Never a bug in NeuroCanvas itself."""

    def __init__(self, message: str, *, node: str | None = None, port: str | None = None,
                 param: str | None = None, file: str | None = None,
                 nodes: tuple[str, ...] = ()):
        self.message = message
        self.node = node
        self.port = port
        self.param = param
        self.file = file
        # every node this problem concerns (a cycle names several)
        self.nodes = tuple(nodes) if nodes else ((node,) if node else ())
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}")
        if self.node:
            loc = f"node '{self.node}'"
            if self.port:
                loc += f" port '{self.port}'"
            if self.param:
                loc += f" parameter '{self.param}'"
            where.append(loc)
        elif self.param:
            where.append(f"'{self.param}'")
        return (": ".join(where) + ": " + self.message) if where else self.message


class GraphFileError(NeuroCanvasError):
    """The file is not a readable graph (bad JSON, wrong format, newer version...)."""


class GraphEditError(NeuroCanvasError):
    """An edit of the in-memory graph that cannot be done (duplicate id, occupied port...)."""


class GraphProblem(NeuroCanvasError):
    """One validation problem of a well-formed graph. Subclasses say which kind."""


class UnknownTypeError(GraphProblem):
    pass


class ParamError(GraphProblem):
    """A parameter that is unknown, missing, of the wrong type or out of range."""


class EdgeError(GraphProblem):
    """An edge to an unknown node or port, or a second edge into one input port."""


class ShapeError(GraphProblem):
    """Shapes that do not fit."""


class CycleError(GraphProblem):
    """A directed cycle with no delay edge on it."""


class SharedWithError(GraphProblem):
    """``shared_with`` names a missing node or one of another type or configuration."""


class InvalidGraphError(NeuroCanvasError):
    """Raised when something needs a valid graph; carries every problem found."""

    def __init__(self, problems: list[GraphProblem], file: str | None = None):
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid graph"
        more = len(self.problems) - 1
        msg = first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")
        super().__init__(msg, file=file,
                         nodes=tuple(n for p in self.problems for n in p.nodes))


class WeightsError(NeuroCanvasError):
    """A weights file that is unreadable, or a key that is missing or has the wrong shape."""


class DataError(NeuroCanvasError):
    """Input data that does not fit the graph (missing field, wrong shape or dtype)."""


class DeviceError(NeuroCanvasError):
    """A device that was asked for but is not there (``gpu`` with no CuPy or no GPU)."""


class NonFiniteError(NeuroCanvasError):
    """A NaN or Inf appeared; names the first node (forward or backward) where it did."""

    def __init__(self, message: str, *, node: str | None = None, phase: str = "forward"):
        self.phase = phase
        super().__init__(message, node=node)


class MemoryBudgetError(NeuroCanvasError):
    """Training or predicting would need more memory than the budget (core.memory); names
    the node that needs the most, found before anything large is allocated."""


class RunError(NeuroCanvasError):
    """A run of the run history (core.runs) that cannot be read, written, found or changed;
    names the run folder or file."""
