#!/usr/bin/env python
"""Entry point: ``python run_bench.py --help`` (the CLI lives in fsadbench.cli)."""

import sys

from fsadbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
