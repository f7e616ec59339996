"""`medshield demo`: embedded broker + scanner simulator + gateway + verifying receiver; prints a summary."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="run the whole chain locally and print a summary", description=__doc__)
    parser.add_argument(
        "--slices", type=int, default=None,
        help="real lung CT slices to send (default 4 where the reference data is present, else 0)",
    )
    parser.add_argument("--generated", type=int, default=2, help="generated PNG+NPY pairs (default 2)")
    parser.add_argument("--no-bad", action="store_true", help="do not send the malformed inputs")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import logging
    import os
    import tempfile

    from gateway.dicom.hospital import available
    from gateway.errors import ConfigError
    from gateway.logging import configure_logging
    from gateway.resources import reference_ct, shared_data_dir
    from medshield_tools.demo import run_demo
    from medshield_tools.scanner_sim import demo_feed

    # An installed gateway has no reference data: the demo then sends pydicom's CT_small and generated images.
    slices = args.slices
    if reference_ct() is None:
        if slices:
            raise ConfigError(f"--slices: the reference CT is not at {shared_data_dir()} (set MEDSHIELD_SHARED)")
        if slices is None:
            print("medshield demo: no reference CT (set MEDSHIELD_SHARED for real lung slices)", flush=True)
        slices = 0
    elif slices is None:
        slices = 4

    # The JSON log goes to a file so the summary stays readable.
    log_path = os.path.join(tempfile.gettempdir(), f"medshield-demo-{os.getpid()}.log")
    log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
    configure_logging("info", stream=log_file)
    logging.getLogger().setLevel(logging.ERROR)
    feed = demo_feed(n_lung=slices, generated=args.generated, with_bad=not args.no_bad)
    print(f"medshield demo: {len(feed)} images (CPU only); log: {log_path}", flush=True)
    hospital = available()
    if not hospital:
        print("  hospital loop (storescu → gateway → Orthanc) skipped: storescu or Orthanc is not installed",
              flush=True)
    elif reference_ct() is None:  # its modality series is real lung CT
        hospital = False
        print("  hospital loop (storescu → gateway → Orthanc) skipped: no reference CT", flush=True)
    summary = run_demo(
        feed, timeout_s=args.timeout, progress=lambda m: print(f"  {m}", flush=True), hospital=hospital
    )
    print(summary.render())
    sys.stdout.flush()
    log_file.close()
    return 0 if summary.ok else 1
