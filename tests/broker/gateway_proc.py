"""A gateway process for the crash tests: `python -m tests.broker.gateway_proc CONFIG`.

It is `medshield run` with the test protection step (the daemon's durability does not depend on it).
"""

from __future__ import annotations

import sys

from gateway.config import load_config
from gateway.daemon import serve
from gateway.logging import configure_logging
from tests.broker.helpers import TaggingProtect

if __name__ == "__main__":
    configure_logging("info")
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    sys.exit(serve(load_config(sys.argv[1]), lambda _metrics: TaggingProtect(delay_s=delay)))
