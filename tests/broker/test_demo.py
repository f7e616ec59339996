"""`medshield demo`'s engine on a small feed: every good image verified, every bad one quarantined."""

from __future__ import annotations

from medshield_tools.demo import run_demo
from medshield_tools.scanner_sim import bad_inputs, ct_small, generated_npy, generated_png


def test_demo_summary_on_a_small_feed() -> None:
    feed = [ct_small(), generated_png(96, 3), generated_npy(96, 4)] + bad_inputs()[:2]
    summary = run_demo(feed, timeout_s=120)
    assert summary.ok, summary.render()
    # CT_small is cropped around the spine: no air around the body, no room under the default carrier rule.
    assert summary.verified == 2 and sum(summary.quarantined.values()) == 3
    assert summary.quarantined.get("no_capacity") == 1
    text = summary.render()
    assert "verified" in text and "OK" in text and "decode" in text
