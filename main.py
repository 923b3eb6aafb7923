"""``python main.py ...``: the circuit-bench command line (also installed as ``circuit-bench``)."""

import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
