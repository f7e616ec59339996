"""`python -m gateway` is `medshield`."""

import sys

from gateway.cli import main

sys.exit(main())
