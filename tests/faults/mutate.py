"""Mutation check of the fault suite: break one guarantee per copy of the code and show the suite fails.

`python -m tests.faults.mutate [--out FILE]` (`make mutants`): the original must pass the short fault suite;
each mutant, applied to a fresh copy of the working tree, must make it fail. Writes a JSON table
(`benchmarks/results/faults-mutants.json` by default) that `python -m tests.faults.run --report` puts into
docs/RELIABILITY.md. A mutant whose text no longer matches the code is an error, not a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "faults-mutants.json"


@dataclass(frozen=True)
class Mutant:
    name: str
    guarantee: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact text, replacement)


MUTANTS = (
    Mutant(
        "ack_before_commit",
        "acknowledge before the spool commit",
        (
            (
                "gateway/daemon/intake.py",
                "        try:\n            self._intake.accept(item.inbound, commit_turn=turn)\n",
                "        self.link.ack(item.message)\n"
                "        try:\n            self._intake.accept(item.inbound, commit_turn=turn)\n",
            ),
        ),
    ),
    Mutant(
        "ack_wrong_generation",
        "acknowledge on the wrong connection generation",
        (
            (
                "gateway/mqtt_link.py",
                "if message.qos == 0 or message.generation != self.state.generation:",
                "if message.qos == 0:",
            ),
        ),
    ),
    Mutant(
        "ack_failed_commit",
        "acknowledge even when the commit raises",
        (
            (
                "gateway/daemon/intake.py",
                "            self._stop.wait(1.0)\n            return\n        finally:\n            turn.close()\n",
                "            self.link.ack(item.message)\n"
                "            return\n        finally:\n            turn.close()\n",
            ),
        ),
    ),
    Mutant(
        "delete_on_publish",
        "delete a row when it is published, not on its PUBACK",
        (
            (
                "gateway/daemon/publisher.py",
                "            entry.token = 0\n            return False\n        return True",
                "            entry.token = 0\n            return False\n"
                "        entry.acked = True\n        return True",
            ),
        ),
    ),
    Mutant(
        "no_deduplication",
        "no de-duplication of redelivered messages",
        (
            ("gateway/daemon/intake.py", "        if self._spool.is_processed(message_id):\n", "        if False:\n"),
            ("gateway/spool.py", '"INSERT INTO processed (message_id', '"INSERT OR REPLACE INTO processed (message_id'),
        ),
    ),
    Mutant(
        "non_persistent_session",
        "non-persistent inbound session",
        (
            (
                "gateway/daemon/intake.py",
                "            persistent=True,\n            subscriptions=config.inbound_filters(),",
                "            persistent=False,\n            subscriptions=config.inbound_filters(),",
            ),
        ),
    ),
)


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in files:
        src = REPO / name
        if not src.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _apply(root: Path, mutant: Mutant) -> None:
    for file, old, new in mutant.edits:
        path = root / file
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutant {mutant.name}: the text to break in {file} is not there exactly once")
        path.write_text(text.replace(old, new))


def _suite(root: Path, timeout_s: float) -> tuple[bool, str, float]:
    """Run the short fault suite in `root`: (passed, the first failing test, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/faults/test_faults.py"],
            cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, "timeout", time.monotonic() - t0
    failed = re.findall(r"FAILED tests/faults/test_faults.py::test_fault\[(\w+)\]", done.stdout)
    return (
        done.returncode == 0,
        (failed[0] if failed else ("" if done.returncode == 0 else done.stdout[-300:])),
        time.monotonic() - t0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", help="mutant names (default all)")
    parser.add_argument("--timeout", type=float, default=1500.0)
    args = parser.parse_args()
    rows = []
    targets = [m for m in MUTANTS if not args.only or m.name in args.only]
    for mutant in (None, *targets):
        with tempfile.TemporaryDirectory(prefix="medshield-mutant-") as tmp:
            root = Path(tmp)
            _copy_tree(root)
            if mutant is not None:
                _apply(root, mutant)
            passed, first_failure, seconds = _suite(root, args.timeout)
        name = mutant.name if mutant else "original"
        row = {
            "mutant": name,
            "guarantee": mutant.guarantee if mutant else "(the code as it is)",
            "suite": "passes" if passed else "fails",
            "caught_by": first_failure,
            "seconds": round(seconds),
            "verdict": ("ok" if passed else "SUITE FAILS ON THE ORIGINAL")
            if mutant is None
            else ("killed" if not passed else "SURVIVED"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["verdict"] in ("ok", "killed") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
