"""`medshield bench daemon`: the daemon itself, through real mosquitto, against its floors, the commit it is
compared with and the encrypt-and-forward alternative, all in one run.

What is measured, per *variant* (each its own process, started by `daemon_runner.py` with its tree's own
interpreter, between two mosquittos of its own):

- `current`: this tree's daemon (`Gateway` + `pipeline_protect_fn`, what `medshield run` runs): MQTT intake,
  decode, segment, hide, pack, seal, spool + ledger commit, acknowledgement, publisher, parts;
- `cstore`: the same daemon of this tree with its DICOM C-STORE listener on, fed by pynetdicom SCU
  associations (a modality) instead of the scanner broker; its latency also records the C-STORE answer time
  (the gateway answers Success after the spool commit). A base tree without `gateway/dicom/listener.py` (as
  cf6efd6) has no such intake, and the result says so instead of giving a base figure;
- `base` (with `--base TREE`): the same daemon of another checkout (e.g. `git worktree add ../perf-base
  cf6efd6` with its own `make venv`), through the same brokers' setup and the same inputs;
- `alternative`: take the file, X25519 + HKDF + AES-256-GCM, forward (no segmentation, hiding, spool).

Per round, every variant runs a *latency* phase (one image in flight, publish to whole envelope on the cloud
topic) and then every variant a *burst* phase (all images back to back: images/s until the last envelope);
the variants' order rotates each round, and round 0 is a warm-up that is run and dropped. The floors are
measured in the same rounds, in this process: one MQTT hop for the input and for the envelope (QoS 1), the
network alone (the envelope over a loopback TCP socket, TCP_NODELAY, answered by one byte), the model alone,
compression alone (the container of a real envelope), the bulk cipher alone (Blowfish-CTR over the compressed
container), the spool commit (SQLite WAL, full sync, one envelope row), and one C-STORE hop of the input
(pynetdicom SCU to an SCP in this process that reads the data set and answers Success).

Sum of floors = input hop + model + compression + cipher + spool commit + envelope hop: what one image cannot
take less than on this machine; for the `cstore` variant the C-STORE hop replaces the MQTT input hop.
CPU-floor capacity = usable cores / (model + compression + cipher + spool).

Inputs are distinct real slices: lung1 (48 slices of shared/data/ct/lung1.npz) and, where `make fetch-ct`
has cached it, the 20 real CT slices of TotalSegmentator's example series (decoded from JPEG 2000), each
written as a 512×512 DICOM file with 16-bit unsigned words (stored = HU + 1024, clipped to 0..4095, rescale
intercept −1024). A run needing more images than there are slices uses each slice again with one corner (air)
pixel changed, so every message has its own id; the result says how many are such repeats.

Every process started here dies with this one: the brokers and the runners get SIGTERM from the kernel when
this process dies, however it dies (PR_SET_PDEATHSIG), and are stopped in order on a normal exit or SIGTERM.
A default run writes to a fresh directory under benchmarks/results/tmp/; an existing non-empty output
directory is refused, so a committed result is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from gateway.broker import EmbeddedBroker, _die_with_parent, find_mosquitto
from medshield_tools.bench import images, machine

RUNNER = Path(__file__).with_name("daemon_runner.py")
REGISTRY_CACHE = Path.home() / ".cache" / "medshield" / "registry"
TS_SERIES = "totalsegmentator-2.18.0-example_ct_dicom"
SIDE = 512
VARIANTS = ("current", "cstore", "base", "alternative")
CSTORE_LISTENER = Path("gateway") / "dicom" / "listener.py"
"""A tree without this file has no C-STORE intake (the base commit cf6efd6 has none)."""


@dataclass(frozen=True)
class DaemonBenchConfig:
    """What one run does."""

    rounds: int = 4
    latency_images: int = 12
    burst_images: int = 40
    overload_images: int = 200
    floor_reps: int = 8
    base: Path | None = None
    base_python: Path | None = None
    workers: int | None = None
    suite: str = "sbbe-blowfish"
    note: str | None = None
    cstore: bool = True
    """Also measure the current tree's DICOM C-STORE intake (variant `cstore`)."""

    @classmethod
    def quick(cls, **overrides: Any) -> DaemonBenchConfig:
        """Seconds, for tests and smoke runs (figures not meaningful)."""
        values: dict[str, Any] = {
            "rounds": 1, "latency_images": 3, "burst_images": 4, "overload_images": 6, "floor_reps": 2,
        }
        values.update(overrides)
        return cls(**values)


# -- inputs ---------------------------------------------------------------------------------------------------


def real_slices() -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, HU int16 512×512) of every real slice available, and a note per source."""
    volume, _ = images.load_lung1()
    out = [(f"lung1 z={z}", volume[z].astype(np.int16)) for z in range(volume.shape[0])]
    notes = [f"lung1.npz: {volume.shape[0]} slices"]
    series = REGISTRY_CACHE / TS_SERIES
    if series.is_dir():
        from gateway import codecs
        from gateway.errors import InputError

        files = sorted(p for p in series.iterdir() if p.is_file())
        for path in files:
            try:
                image = codecs.decode(path.read_bytes())
            except InputError:
                continue
            if image.hu is not None and image.hu.shape == (SIDE, SIDE):
                out.append((f"totalsegmentator example {path.name[-8:]}", np.rint(image.hu).astype(np.int16)))
        notes.append(f"{TS_SERIES}: {len(out) - volume.shape[0]} of {len(files)} files are 512x512 CT slices"
                     " (JPEG 2000 lossless, decoded)")
    else:
        notes.append(f"{TS_SERIES} not cached (make fetch-ct): lung1 only")
    return out, notes


def write_inputs(directory: Path, count: int, slices: Sequence[tuple[str, np.ndarray]]) -> tuple[list[Path], int]:
    """`count` DICOM files, distinct; returns the paths and how many repeat a slice with one pixel changed."""
    paths, repeats = [], 0
    for i in range(count):
        _, hu = slices[i % len(slices)]
        stored = images.hu_to_stored(hu.astype(np.float32), 16)
        if i >= len(slices):
            stored = stored.copy()
            stored[0, 0] = (int(stored[0, 0]) + i // len(slices)) % (images.STORED_MAX + 1)
            repeats += 1
        path = directory / f"in{i:05d}.dcm"
        path.write_bytes(images.wrap_dicom(stored, hu_intercept=-images.HU_OFFSET, uid_seed=i))
        paths.append(path)
    return paths, repeats


# -- processes ------------------------------------------------------------------------------------------------


@dataclass
class Runner:
    """One variant's process and its two brokers."""

    name: str
    proc: subprocess.Popen[str]
    brokers: tuple[EmbeddedBroker, EmbeddedBroker]
    last_envelope: Path
    workers: int = 1
    results: list[dict[str, Any]] = field(default_factory=list)

    def ask(self, command: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return _read_result(self.proc, timeout)


def _read_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a benchmark runner exited (status {proc.poll()})")
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    raise TimeoutError("a benchmark runner did not answer")


class Processes:
    """Everything this run started, stopped in reverse order; a record of the pids goes to `pid_file`."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.runners: list[Runner] = []
        self.brokers: list[EmbeddedBroker] = []

    def broker(self) -> EmbeddedBroker:
        broker = EmbeddedBroker(max_inflight=20).start()
        self.brokers.append(broker)
        self._record()
        return broker

    def runner(self, name: str, python: Path, repo: Path, mode: str, state: Path, config: DaemonBenchConfig,
               stderr: IO[str]) -> Runner:
        scanner, cloud = self.broker(), self.broker()
        last = state / "last.msh"
        state.mkdir(parents=True, exist_ok=True)
        argv = [
            *_die_with_parent(), str(python), str(RUNNER), "--repo", str(repo), "--mode", mode,
            "--scanner-port", str(scanner.port), "--cloud-port", str(cloud.port), "--state", str(state),
            "--suite", config.suite, "--last-envelope", str(last),
        ]
        if config.workers is not None:
            argv += ["--workers", str(config.workers)]
        env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env=env, start_new_session=True)
        runner = Runner(name, proc, (scanner, cloud), last)
        self.runners.append(runner)
        self._record()
        ready = _read_result(proc, 300)
        runner.workers = int(ready["workers"])
        return runner

    def pids(self) -> list[int]:
        out = [r.proc.pid for r in self.runners]
        for broker in self.brokers:
            proc = getattr(broker, "_proc", None)
            if proc is not None:
                out.append(proc.pid)
        return out

    def _record(self) -> None:
        self.pid_file.write_text(json.dumps(self.pids()) + "\n")

    def stop(self) -> None:
        for runner in reversed(self.runners):
            if runner.proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    assert runner.proc.stdin is not None
                    runner.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    runner.proc.stdin.close()
                try:
                    runner.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(runner.proc.pid, signal.SIGKILL)
                    runner.proc.wait(timeout=10)
        for broker in reversed(self.brokers):
            broker.stop()


@contextlib.contextmanager
def _sigterm_is_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the `finally` that stops every process runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- floors ---------------------------------------------------------------------------------------------------


class Floors:
    """The floors, measured in this process, a few repetitions per round."""

    def __init__(self, input_file: bytes, broker: EmbeddedBroker, state: Path) -> None:
        from gateway import codecs, container
        from gateway.crypto.envelope import open_envelope
        from gateway.crypto.origin import GatewayKey, TrustedGateways
        from gateway.crypto.recipients import generate_recipient
        from gateway.pipeline import protect
        from gateway.rng import system_random
        from gateway.segment import Segmenter
        from gateway.spool import Spool
        from medshield_tools.bench.dimse import CStoreHop
        from medshield_tools.bench.mqtt import Hop

        self.segmenter = Segmenter()
        self.image = codecs.decode(input_file)
        key, card = generate_recipient("floors", system_random)
        signer = GatewayKey.generate("bench-floors", system_random)
        envelope = protect(input_file, card, signer=signer, segmenter=self.segmenter.predict).envelope
        # The container of that real envelope: what the pack stage compresses.
        opened = open_envelope(envelope, key, gateways=TrustedGateways([signer.card]))
        self.box = container.unpack(opened.plaintext, opened.header["compression"], 1 << 30)
        self.plaintext = opened.plaintext
        self.input, self.envelope = input_file, envelope
        self.hop = Hop("127.0.0.1", broker.port)
        self.spool = Spool(state / "floors-spool.db", max_bytes=1 << 32)
        self.samples: dict[str, list[float]] = {}
        self._seq = 0
        self._server = _EchoServer()
        self.dimse = CStoreHop()

    def measure(self, reps: int) -> None:
        from gateway import container
        from medshield_tools.bench.floors import blowfish_ctr

        key = os.urandom(56)
        for _ in range(reps):
            self._time("mqtt hop (input)", lambda: self.hop.send(self.input))
            self.samples.setdefault("c-store hop (input)", []).append(self.dimse.send(self.input))
            self._time("mqtt hop (envelope)", lambda: self.hop.send(self.envelope))
            self._time("network alone (envelope)", lambda: self._server.round_trip(self.envelope))
            self._time("model alone", lambda: self.segmenter.predict(self.image))
            self._time("compression alone", lambda: container.pack(self.box))
            self._time("cipher alone", lambda: blowfish_ctr(key, self.plaintext))
            self._time("spool commit", self._commit)

    def _commit(self) -> None:
        self._seq += 1
        self.spool.commit(f"floor-{self._seq}-{os.getpid()}", "sealed", [("envelope", "bench/floor", self.envelope)])

    def _time(self, name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        fn()
        self.samples.setdefault(name, []).append(time.perf_counter() - t0)

    def close(self) -> None:
        self.hop.close()
        self._server.close()
        self.dimse.close()
        self.spool.close()


class _EchoServer:
    """A loopback TCP peer that answers every complete message with one byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._client = socket.create_connection(("127.0.0.1", self._port))
        self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                need = int.from_bytes(head, "big")
                while need:
                    chunk = conn.recv(min(need, 1 << 20))
                    if not chunk:
                        return
                    need -= len(chunk)
                conn.sendall(b"k")

    def round_trip(self, payload: bytes) -> None:
        self._client.sendall(len(payload).to_bytes(4, "big") + payload)
        self._client.recv(1)

    def close(self) -> None:
        self._client.close()
        self._listener.close()


# -- the run --------------------------------------------------------------------------------------------------


def _p(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _stage_summary(timings: list[dict[str, float]]) -> dict[str, float]:
    stages: dict[str, list[float]] = {}
    for item in timings:
        for name, value in item.items():
            stages.setdefault(name, []).append(value)
    return {name: 1000 * statistics.median(values) for name, values in sorted(stages.items())}


def run(config: DaemonBenchConfig, out: Path, repo: Path, python: Path, log: IO[str] = sys.stderr) -> dict[str, Any]:
    """Run the benchmark, write `daemon.json` and `daemon.csv` into `out`, return the result."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: a benchmark result is never overwritten")
    out.mkdir(parents=True, exist_ok=True)
    find_mosquitto()
    slices, notes = real_slices()
    n_variants = 2 + (config.base is not None) + config.cstore
    per_variant = (config.rounds + 1) * (config.latency_images + config.burst_images)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="medshield-bench-daemon-") as tmp, _sigterm_is_exit():
        root = Path(tmp)
        (root / "in").mkdir()
        files, repeats = write_inputs(root / "in", per_variant * n_variants + config.overload_images, slices)
        procs = Processes(out / "pids.json")
        try:
            variants = [("current", python, repo, "gateway")]
            if config.cstore:
                variants.append(("cstore", python, repo, "gateway-cstore"))
            if config.base is not None:
                base_python = config.base_python or config.base / ".venv" / "bin" / "python"
                variants.append(("base", base_python, config.base, "gateway"))
            variants.append(("alternative", python, repo, "alternative"))
            runners = [procs.runner(n, py, tree, mode, root / n, config, log) for n, py, tree, mode in variants]
            floors = Floors(files[0].read_bytes(), procs.broker(), root)
            result = _rounds(config, runners, floors, files, log)
            if config.cstore and config.base is not None:
                result["summary"]["cstore"]["base"] = cstore_base_note(config.base)
            result["overload"] = _overload(runners[0], files, config)
            _check_opens(runners[0], root / "current")
            floors.close()
        finally:
            procs.stop()
    result.update(
        benchmark="medshield bench daemon",
        started_utc=started,
        finished_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine.describe(),
        load_average={"before": load_before, "after": os.getloadavg()},
        note=config.note,
        config={k: str(v) if isinstance(v, Path) else v for k, v in config.__dict__.items()},
        inputs={
            "format": "DICOM, Explicit VR Little Endian, 512x512, 16-bit words, unsigned (PixelRepresentation 0),"
            " stored = HU + 1024 clipped to 0..4095, RescaleIntercept -1024",
            "sources": notes,
            "distinct_slices": len(slices),
            "files": len(files),
            "repeats_with_one_pixel_changed": repeats,
        },
        commits={name: _commit_of(tree) for name, _, tree, _ in variants},
    )
    (out / "daemon.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    _write_csv(result, out / "daemon.csv")
    (out / "pids.json").unlink(missing_ok=True)
    return result


def cstore_base_note(base: Path) -> str:
    """What the result says about the base tree and the C-STORE intake (the `cstore` variant runs only the
    current tree)."""
    if (base / CSTORE_LISTENER).is_file():
        return "the base tree has a C-STORE intake too; this run measured it for the current tree only"
    return f"the base tree has no C-STORE intake (no {CSTORE_LISTENER}): no base figure for this intake"


def _commit_of(tree: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _rounds(config: DaemonBenchConfig, runners: list[Runner], floors: Floors, files: list[Path],
            log: IO[str]) -> dict[str, Any]:
    cursor = 0

    def take(n: int) -> list[str]:
        nonlocal cursor
        chosen = [str(p) for p in files[cursor : cursor + n]]
        cursor += n
        return chosen

    # Every variant gets its own files (a repeated file would be a duplicate message to the same daemon).
    per_runner = {r.name: 0 for r in runners}
    phases: dict[str, dict[str, list[dict[str, Any]]]] = {r.name: {"latency": [], "burst": []} for r in runners}
    warm = {"latency": [], "burst": []}  # type: dict[str, list[dict[str, Any]]]
    for rnd in range(config.rounds + 1):
        order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
        batch = {r.name: take(config.latency_images + config.burst_images) for r in runners}
        for r in order:
            answer = r.ask({"op": "latency", "files": batch[r.name][: config.latency_images], "warmup": 2})
            (phases[r.name]["latency"] if rnd else warm["latency"]).append(answer)
        floors.measure(config.floor_reps if rnd else 1)
        for r in order:
            answer = r.ask({"op": "burst", "files": batch[r.name][config.latency_images :]})
            (phases[r.name]["burst"] if rnd else warm["burst"]).append(answer)
        for r in runners:
            per_runner[r.name] += 1
        print(f"bench daemon: round {rnd}/{config.rounds} done{' (warm-up, dropped)' if rnd == 0 else ''}",
              file=log, flush=True)
    # Round 0 warmed the floors too: their first sample of each kind is dropped.
    floor_samples = {name: values[1:] for name, values in floors.samples.items()}
    variants: dict[str, Any] = {}
    for r in runners:
        lat = [v for a in phases[r.name]["latency"] for v in a["latency_s"]]
        bursts = phases[r.name]["burst"]
        rates = [b["images_per_s"] for b in bursts]
        variants[r.name] = {
            "workers": r.workers,
            "latency_ms": {"n": len(lat), "p50": 1000 * _p(lat, 50), "p95": 1000 * _p(lat, 95),
                           "p99": 1000 * _p(lat, 99), "min": 1000 * min(lat), "samples": [1000 * v for v in lat]},
            "cpu_ms_per_image_latency": 1000
            * statistics.median(a["cpu_s_per_image"] for a in phases[r.name]["latency"]),
            "images_per_s": {"median": statistics.median(rates), "per_round": rates},
            "cpu_ms_per_image_burst": 1000 * statistics.median(b["cpu_s_per_image"] for b in bursts),
            "stages_ms_p50": {
                "latency": _stage_summary([t for a in phases[r.name]["latency"] for t in a["timings"]]),
                "burst": _stage_summary([t for b in bursts for t in b["timings"]]),
            },
            "rss_peak_mb_burst": max(b["rss_peak_bytes"] for b in bursts) / 2**20,
        }
        answers = [v for a in phases[r.name]["latency"] for v in a.get("answer_s", [])]
        if answers:  # C-STORE: send to the Success response, which comes after the spool commit
            variants[r.name]["answer_ms"] = {"n": len(answers), "p50": 1000 * _p(answers, 50),
                                             "p95": 1000 * _p(answers, 95)}
    floor_ms = {
        name: {"p50": 1000 * _p(v, 50), "p95": 1000 * _p(v, 95), "n": len(v)} for name, v in floor_samples.items()
    }
    summed = ["mqtt hop (input)", "model alone", "compression alone", "cipher alone", "spool commit",
              "mqtt hop (envelope)"]
    cpu_floors = ["model alone", "compression alone", "cipher alone", "spool commit"]
    sum_floors = sum(floor_ms[n]["p50"] for n in summed)
    cores = int(machine.describe().get("usable_cores") or 1)
    capacity = cores / (sum(floor_ms[n]["p50"] for n in cpu_floors) / 1000)
    current = variants["current"]
    summary: dict[str, Any] = {
        "sum_of_floors_ms": sum_floors,
        "sum_of_floors_terms": summed,
        "cpu_floor_capacity_images_per_s": capacity,
        "cpu_floor_terms": cpu_floors,
        "e2e_p50_over_sum_of_floors": current["latency_ms"]["p50"] / sum_floors,
        "e2e_p50_over_sum_of_floors_lower_model": current["latency_ms"]["p50"] / _lower_model_floors(
            floor_ms, summed, current),
        "images_per_s_over_cpu_floor_capacity": current["images_per_s"]["median"] / capacity,
        "seal_p50_ms": current["stages_ms_p50"]["latency"].get("seal"),
        "seal_p50_ms_burst": current["stages_ms_p50"]["burst"].get("seal"),
    }
    if "base" in variants:
        base_rate = variants["base"]["images_per_s"]["median"]
        summary["images_per_s_over_base"] = current["images_per_s"]["median"] / base_rate
        summary["e2e_p50_over_base"] = current["latency_ms"]["p50"] / variants["base"]["latency_ms"]["p50"]
    summary["e2e_p50_over_alternative"] = current["latency_ms"]["p50"] / variants["alternative"]["latency_ms"]["p50"]
    if "cstore" in variants:
        # The same floors with the input arriving by C-STORE instead of MQTT.
        cstore, terms = variants["cstore"], ["c-store hop (input)", *summed[1:]]
        cstore_floors = sum(floor_ms[n]["p50"] for n in terms)
        summary["cstore"] = {
            "e2e_p50_ms": cstore["latency_ms"]["p50"],
            "answer_p50_ms": cstore["answer_ms"]["p50"],
            "images_per_s": cstore["images_per_s"]["median"],
            "sum_of_floors_ms": cstore_floors,
            "sum_of_floors_terms": terms,
            "e2e_p50_over_sum_of_floors": cstore["latency_ms"]["p50"] / cstore_floors,
            "e2e_p50_over_sum_of_floors_lower_model": cstore["latency_ms"]["p50"] / _lower_model_floors(
                floor_ms, terms, cstore),
            "images_per_s_over_cpu_floor_capacity": cstore["images_per_s"]["median"] / capacity,
            "images_per_s_over_mqtt_intake": cstore["images_per_s"]["median"] / current["images_per_s"]["median"],
            "seal_p50_ms": cstore["stages_ms_p50"]["latency"].get("seal"),
            "seal_p50_ms_burst": cstore["stages_ms_p50"]["burst"].get("seal"),
        }
    return {"variants": variants, "floors_ms": floor_ms, "summary": summary,
            "input_bytes": len(floors.input), "envelope_bytes": len(floors.envelope)}


def _lower_model_floors(floor_ms: dict[str, dict[str, float]], summed: list[str], variant: dict[str, Any]) -> float:
    """The sum of floors with the model's term the smaller of the model alone (timed in this process) and the
    variant's own segment stage (latency phase): where this process's model ran slower than the daemon's, the
    plain sum would flatter the ratio."""
    model = floor_ms["model alone"]["p50"]
    segment = variant["stages_ms_p50"]["latency"].get("segment", model)
    return float(sum(floor_ms[n]["p50"] for n in summed) - model + min(model, segment))


def _overload(runner: Runner, files: list[Path], config: DaemonBenchConfig) -> dict[str, Any]:
    """A burst well above capacity for the current daemon: how its memory behaves (and that all arrive)."""
    chosen = [str(p) for p in files[-config.overload_images :]]
    answer = runner.ask({"op": "burst", "files": chosen})
    return {
        "images": answer["images"],
        "images_per_s": answer["images_per_s"],
        "publish_s": answer["publish_s"],
        "rss_before_mb": answer["rss_before_bytes"] / 2**20,
        "rss_peak_mb": answer["rss_peak_bytes"] / 2**20,
    }


def _check_opens(runner: Runner, state: Path) -> None:
    """The current daemon's last envelope opens, and its hidden payload verifies: a broken daemon is not
    benchmarked."""
    from gateway.crypto.origin import GatewayKey, TrustedGateways
    from gateway.crypto.recipients import PrivateKey
    from gateway.pipeline import open_

    key = PrivateKey.load(next(state.glob("*.key")))
    card = GatewayKey.load_or_create(state / "state" / "ledger.key", "bench-gw").card
    open_(runner.last_envelope.read_bytes(), key, gateways=TrustedGateways([card]), restore_original=True)


def _write_csv(result: dict[str, Any], path: Path) -> None:
    rows = ["kind,name,metric,value"]
    for name, v in result["variants"].items():
        rows.append(f"variant,{name},latency_p50_ms,{v['latency_ms']['p50']:.3f}")
        rows.append(f"variant,{name},latency_p95_ms,{v['latency_ms']['p95']:.3f}")
        rows.append(f"variant,{name},images_per_s,{v['images_per_s']['median']:.3f}")
        rows.append(f"variant,{name},cpu_ms_per_image_burst,{v['cpu_ms_per_image_burst']:.3f}")
        for phase, stages in v["stages_ms_p50"].items():
            rows += [f"stage-{phase},{name},{stage}_p50_ms,{ms:.3f}" for stage, ms in stages.items()]
    for name, f in result["floors_ms"].items():
        rows.append(f"floor,{name},p50_ms,{f['p50']:.3f}")
    for name, value in result["summary"].items():
        if isinstance(value, float):
            rows.append(f"summary,{name},value,{value:.4f}")
    for name, value in result["summary"].get("cstore", {}).items():
        if isinstance(value, float):
            rows.append(f"summary-cstore,{name},value,{value:.4f}")
    path.write_text("\n".join(rows) + "\n")
