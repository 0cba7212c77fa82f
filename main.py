"""NeuroCanvas entry point: the editor with no arguments, sub-commands otherwise."""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
