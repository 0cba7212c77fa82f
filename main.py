"""NeuroCanvas entry point: the editor with no arguments (or just a graph file to open),
a sub-command of ``core.cli`` otherwise (``python main.py --help`` lists them)."""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.suite import add_parser as add_bench
from core import cli

EXTRA_COMMANDS = (add_bench,)  # commands that live outside core/


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = cli.command_names(EXTRA_COMMANDS)
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        return open_editor(argv[0] if argv else None, commands)
    return cli.run(argv, EXTRA_COMMANDS)


def open_editor(graph: str | None, commands: list[str]) -> int:
    if graph is not None and not Path(graph).exists():
        print(f"{cli.PROG}: error: {graph}: no such file (and not a command: "
              f"{', '.join(commands)})", file=sys.stderr)
        return 2
    try:
        import PySide6  # noqa: F401
    except ImportError:
        print(f"{cli.PROG}: error: the editor needs PySide6, which is not installed; run "
              "'make run', or use the commands (see 'python main.py --help')",
              file=sys.stderr)
        return 2
    from gui.platform_check import xcb_problem
    problem = xcb_problem()  # Qt would abort the process with a page of advice instead
    if problem:
        print(f"{cli.PROG}: error: {problem}", file=sys.stderr)
        return 2
    from gui.main_window import run_editor  # the commands never load Qt
    return run_editor(graph)


if __name__ == "__main__":
    sys.exit(main())
