#!/usr/bin/env python3
"""Latency vs image size: the pipeline, its floors and the alternative in one run (same as `medshield bench`).

    python benchmarks/harness.py                       # full run → benchmarks/results/bench/
    python benchmarks/harness.py --quick               # seconds, tiny sizes
    python benchmarks/harness.py --sizes 512 --bits 16 --budget 30 --out /tmp/b

Every option of `medshield bench --help` applies.
"""

from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
