"""MedShield: an edge gateway that protects medical images before they leave the hospital.

The package imports without accelerators, torch or a broker; heavy or optional dependencies are imported
where they are used.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime 1.29+ on Linux queues usage telemetry (process, OS, a persistent device id) on disk for upload
# to Microsoft unless this is set before its first session. Nothing but ciphertext leaves the gateway, so it
# is set here, before any module of the package can import onnxruntime, and not left to the operator.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
