"""The fault suite, short version: each fault kind once, through real brokers and the real receiver.

Each must end with 0 lost, 0 duplicated (protected twice), 0 crashes, every hostile input quarantined.
`make faults` runs the long version and writes docs/RELIABILITY.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.disk import DiskUnavailable
from tests.faults.scenarios import SCENARIOS

# The kinds that catch the mutants (tests/faults/mutate.py) and the defects of issue 19, at small sizes; the
# other kinds (bursts, slow cloud, scale-out, the other kill points, the packet-id wrap: tests/broker) run in
# `make faults`.
SHORT = {
    "sigkill_random": 12,
    "sigkill_protect": 12,
    "sigkill_commit": 12,
    "sigkill_publish": 12,
    "cloud_outage": 12,
    "scanner_state_lost": 12,
    "disk_full": 12,
    "sigterm_full_queue": 12,
    "ready_with_backlog": 100,
    "hostile": 10,
    "dedup_poisoning": 1,
}


@pytest.mark.parametrize("kind", sorted(SHORT))
def test_fault(kind: str, tmp_path: Path) -> None:
    try:
        result = SCENARIOS[kind](tmp_path, SHORT[kind], 1)
    except DiskUnavailable as exc:
        pytest.skip(str(exc))
    assert result.ok, result
