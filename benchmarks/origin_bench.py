"""Origin and ledger costs: verifying a clean 10,000-entry ledger, the receiver's check of one ledger entry,
and the Ed25519 work an envelope adds (sign at the gateway, verify at the receiver and at `open`).

    .venv/bin/python benchmarks/origin_bench.py [--entries 10000] [--out benchmarks/results/origin_bench.json]

- `ledger_verify_s`: `verify_ledger` over N signed entries and their checkpoint (signatures, chain,
  checkpoint), one run after building the ledger; per-entry figures are that divided by N.
- `receiver_check_ms`: `Receiver.handle_ledger` per entry, split into the check (parse, pinned-card
  signature, chain) and the whole call (the check plus the fsynced append).
- `envelope_sign_ms`, `envelope_verify_ms`: the signature over a 300 KB envelope's digest, and its check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.crypto.envelope import signed_message  # noqa: E402
from gateway.crypto.origin import GatewayKey, TrustedGateways, verify_signature  # noqa: E402
from gateway.ledger import GENESIS_HASH, LedgerItem, LedgerWriter, verify_ledger  # noqa: E402
from gateway.rng import SeededRandom  # noqa: E402
from medshield_tools.bench.machine import describe  # noqa: E402
from medshield_tools.bench.stats import latency_ms  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--receiver-entries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "origin_bench.json")
    args = parser.parse_args()
    from gateway.receiver import Receiver

    key = GatewayKey.generate("gw-bench", SeededRandom(b"origin-bench"))
    writer = LedgerWriter(key, "medshield/gateways/gw-bench/ledger")
    items = [LedgerItem(f"m{i}", hashlib.sha256(b"%d" % i).hexdigest(), "t") for i in range(args.entries)]
    t0 = time.perf_counter()
    entries = writer.entries(0, GENESIS_HASH, items, time.time_ns())
    build_s = time.perf_counter() - t0
    checkpoint = writer.checkpoint(len(entries), entries[-1].entry_hash(), time.time_ns())
    t0 = time.perf_counter()
    report = verify_ledger(entries, key.public_key, [checkpoint])
    verify_s = time.perf_counter() - t0
    assert report.ok and report.entries == args.entries, report.problems[:5]

    pinned = TrustedGateways([key.card])
    with tempfile.TemporaryDirectory() as tmp:
        receiver = Receiver(Path(tmp), pinned)
        whole: list[float] = []
        for entry in entries[: args.receiver_entries]:
            payload = entry.to_json().encode()
            t0 = time.perf_counter()
            assert receiver.handle_ledger(writer.topic, payload)
            whole.append(time.perf_counter() - t0)
        check_ms = 1000 * receiver.ledger_check_seconds / args.receiver_entries

    unsigned = bytes(300 * 1024)
    sign, verify = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        signature = key.sign(signed_message(unsigned))
        sign.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert verify_signature(key.public_key, signed_message(unsigned), signature)
        verify.append(time.perf_counter() - t0)

    result = {
        "machine": describe(),
        "entries": args.entries,
        "ledger_build_s": round(build_s, 3),
        "ledger_verify_s": round(verify_s, 3),
        "ledger_verify_per_entry_ms": round(1000 * verify_s / args.entries, 4),
        "receiver_entries": args.receiver_entries,
        "receiver_check_mean_ms": round(check_ms, 4),
        "receiver_handle_ms": latency_ms(whole),
        "envelope_sign_ms": latency_ms(sign),
        "envelope_verify_ms": latency_ms(verify),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
