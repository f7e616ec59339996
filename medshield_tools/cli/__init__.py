"""Command-line entry points of the tooling (`medshield demo`, `medshield report`), registered by `gateway.cli`."""
