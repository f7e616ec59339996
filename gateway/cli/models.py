"""`medshield models list | build-engines`: the committed models, and TensorRT engines built ahead of time.

`build-engines` is what `systemd/medshield-build-engines.service` runs before the gateway starts, so the first
image does not wait minutes for an engine build. Engines are cached under the state directory, keyed by the
ONNX sha256, TensorRT version, GPU and precision; running it again reuses them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.resources import MODELS_DIR

# The segmentation models the gateway serves, in the order they are listed and built.
SEGMENTATION_MODELS: tuple[tuple[str, Path, Path], ...] = (
    ("dsnet", MODELS_DIR / "dsnet" / "dsnet.onnx", MODELS_DIR / "dsnet" / "manifest.json"),
    ("unet", MODELS_DIR / "dsnet" / "unet.onnx", MODELS_DIR / "dsnet" / "unet.manifest.json"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models", help="list the committed models; build TensorRT engines", description=__doc__)
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each segmentation model, its sha256 check and the backends usable here")
    listing.set_defaults(func=list_models)
    build = actions.add_parser("build-engines", help="build (or reuse) the TensorRT engines for this GPU")
    build.add_argument("--state-dir", type=Path, help="engine cache directory (default: the gateway's state dir)")
    build.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    build.add_argument(
        "--model", action="append", choices=[name for name, _, _ in SEGMENTATION_MODELS],
        help="only this model (repeatable; default: all)",
    )
    build.set_defaults(func=build_engines)


def list_models(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError
    from gateway.inference import available_backends
    from gateway.segment import Manifest, verify_model

    status = 0
    for name, onnx, manifest_path in SEGMENTATION_MODELS:
        try:
            manifest = Manifest.load(manifest_path)
            verify_model(onnx, manifest)
            check = "sha256 ok"
        except ConfigError as exc:
            check, status = f"INVALID: {exc}", 2
            manifest = None
        shape = "x".join(map(str, manifest.input_shape)) if manifest else "?"
        print(f"{name:6s} {onnx}  input {shape}  {check}")
    for backend, reason in available_backends().items():
        print(f"backend {backend:12s} {'available' if reason is None else 'unavailable: ' + reason}")
    return status


def build_engines(args: argparse.Namespace) -> int:
    from gateway.inference.tensorrt_native import TensorRTRunner
    from gateway.segment import Manifest, verify_model

    wanted = set(args.model or [name for name, _, _ in SEGMENTATION_MODELS])
    for name, onnx, manifest_path in SEGMENTATION_MODELS:
        if name not in wanted:
            continue
        verify_model(onnx, Manifest.load(manifest_path))  # never build an engine from an unverified model
        # Raises BackendUnavailable (a configuration error, exit 2) where TensorRT or a GPU is missing.
        runner = TensorRTRunner(onnx, state_dir=args.state_dir, precision=args.precision)
        runner.warmup()
        print(f"{name}: engine {'built' if runner.built else 'reused'} ({runner.precision}) at {runner.engine_path}")
    return 0
