"""`medshield demo`'s hospital loop with the real tools: storescu → gateway (C-STORE) → MQTT → receiver →
Orthanc, every image checked in Orthanc against what storescu sent."""

from __future__ import annotations

from gateway.dicom import hospital
from medshield_tools.demo import run_demo
from medshield_tools.scanner_sim import generated_npy
from tests.dicom.conftest import require_tool


def test_demo_hospital_loop_ends_in_orthanc_bit_exact() -> None:
    require_tool("storescu")
    assert hospital.available(), "Orthanc is not installed (`make test` installs it with apt-get)"
    summary = run_demo([generated_npy(96, 4)], timeout_s=180, hospital=True)
    assert summary.ok, summary.render()
    h = summary.hospital
    assert h is not None and h.sent == 6
    assert h.answered_success == h.in_orthanc == h.identical == h.bit_exact == 6
    assert summary.verified == 7
    assert "storescu → gateway (C-STORE) → Orthanc" in summary.render()
