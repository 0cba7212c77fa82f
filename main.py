"""NeuroCanvas entry point: the editor with no arguments (or just a graph file to open),
a sub-command of ``core.cli`` otherwise (``python main.py --help`` lists them)."""
from __future__ import annotations

import sys
from pathlib import Path

PROG = "neurocanvas"


def main(argv: list[str] | None = None) -> int:
    # imported here, not at the top, so that a Ctrl-C while they load is caught below
    from benchmarks.suite import add_parser as add_bench
    from core import cli

    extra = (add_bench,)  # commands that live outside core/
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = cli.command_names(extra)
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        return open_editor(argv[0] if argv else None, commands)
    return cli.run(argv, extra)


def open_editor(graph: str | None, commands: list[str]) -> int:
    if graph is not None and not Path(graph).exists():
        print(f"{PROG}: error: {graph}: no such file (and not a command: "
              f"{', '.join(commands)})", file=sys.stderr)
        return 2
    try:
        import PySide6  # noqa: F401
    except ImportError:
        print(f"{PROG}: error: the editor needs PySide6, which is not installed; run "
              "'make run', or use the commands (see 'python main.py --help')",
              file=sys.stderr)
        return 2
    from gui.platform_check import xcb_problem
    problem = xcb_problem()  # Qt would abort the process with a page of advice instead
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    from gui.main_window import run_editor  # the commands never load Qt
    return run_editor(graph)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before a command's own handling is in place
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
