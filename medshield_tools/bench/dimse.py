"""DICOM plumbing for the benchmark: a timed C-STORE hop over loopback, the floor of the C-STORE intake.

An SCU association and an SCP (both pynetdicom, as the gateway's listener) in this process; the SCP reads the
data set as the gateway's handler does (`encoded_dataset`) and answers Success at once. So the hop is what a
modality's C-STORE of the image costs before any protection: encoding, the DIMSE exchange and both transfers.
"""

from __future__ import annotations

import io
import time
from typing import Any, Self

SCP_AE = "BENCH-SCP"
SCU_AE = "BENCH-CT"
SUCCESS = 0x0000


class CStoreHop:
    """`send(part10_bytes)` times one C-STORE to a listener that only reads the data set and answers."""

    def __init__(self) -> None:
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
        from pynetdicom import AE, evt

        scp = AE(ae_title=SCP_AE)
        scp.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
        server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        if server is None:  # only a blocking start returns nothing
            raise RuntimeError("the benchmark's C-STORE listener did not start")
        self._server = server
        self.port = int(self._server.server_address[1])
        self._scu = AE(ae_title=SCU_AE)
        self._scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        self.received = 0

    def _on_store(self, event: Any) -> int:
        self.received += len(event.encoded_dataset())
        return SUCCESS

    def send(self, data: bytes) -> float:
        """Seconds from the C-STORE request to its Success response, over a fresh association (opened and
        released outside the time: a modality keeps one open for a series)."""
        import pydicom

        dataset = pydicom.dcmread(io.BytesIO(data))
        assoc = self._scu.associate("127.0.0.1", self.port, ae_title=SCP_AE)
        if not assoc.is_established:
            raise RuntimeError("the benchmark's own C-STORE listener refused the association")
        try:
            t0 = time.perf_counter()
            status = assoc.send_c_store(dataset)
            elapsed = time.perf_counter() - t0
        finally:
            assoc.release()
        if getattr(status, "Status", None) != SUCCESS:
            raise RuntimeError("the benchmark's own C-STORE listener did not answer Success")
        return elapsed

    def close(self) -> None:
        self._server.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
