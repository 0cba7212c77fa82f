"""The sub-commands of ``main.py`` (docs/format.md section 6), one file each:

- ``check.py``, ``train.py``, ``sweep.py``, ``predict.py``, ``export.py``, ``import_.py``
  (``import``): a command's ``add_parser`` and what it does; ``progress.py``: the progress
  line ``train`` draws on a terminal;
- ``common.py``: what they share (``UsageError``, one-line messages, the parser class).

``run(argv, extra)`` parses and runs one command. ``extra`` adds commands defined outside
``core/`` (``main.py`` adds ``bench`` from ``benchmarks/``), so that core never imports
them. A user error prints one line on stderr and gives exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

from core.cli import check, export, import_, predict, sweep, train
from core.cli.common import PROG, Parser, UsageError, one_line
from core.errors import NeuroCanvasError

AddParser = Callable[[argparse._SubParsersAction], None]

__all__ = ["PROG", "UsageError", "build_parser", "command_names", "run"]


def build_parser(extra: Iterable[AddParser] = ()) -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="NeuroCanvas: draw, train and export neural networks. "
               "With no command (or just a GRAPH), opens the editor.")
    sub = p.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    for add in (check.add_parser, train.add_parser, sweep.add_parser, predict.add_parser,
                export.add_parser, import_.add_parser, *extra):
        add(sub)
    return p


def command_names(extra: Iterable[AddParser] = ()) -> list[str]:
    """The sub-commands, in the order ``--help`` lists them."""
    parser = build_parser(extra)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def run(argv: list[str], extra: Iterable[AddParser] = ()) -> int:
    """Run one command line (``argv`` without the program name); the exit status."""
    parser = build_parser(extra)
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except NeuroCanvasError as e:
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
