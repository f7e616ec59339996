#!/usr/bin/env python3
"""Security metrics of protected output (same as `medshield report`).

    python benchmarks/report.py --set --seed HEX --out benchmarks/results/report     # the reference image set
    python benchmarks/report.py IMAGE --mask MASK.png --out DIR                     # one image

Every option of `medshield report --help` applies.
"""

from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
