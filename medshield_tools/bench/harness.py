"""The benchmark run: latency vs image size for the real pipeline, its floors and the alternative, in one run.

For every image size and bit depth:

- **pipeline** (per suite and inference backend): a scanner message goes through a real mosquitto to the
  gateway (`ingest`), `gateway.pipeline.protect` runs (decode, segment, hide, pack, SBBE search, encrypt, seal)
  and the envelope goes through the broker again to a cloud-side subscriber (`publish→receive`). The total is
  the wall time from the scanner's publish to the envelope's delivery.
- **pipeline at the paper's settings**: the same with the SBBE population of the paper (50) instead of the
  default, so the search's cost at both settings is measured side by side.
- **floors**: the model alone (segmenter on the decoded image), the bulk cipher alone over a buffer as long as
  the pipeline's plaintext (Blowfish-CTR; AES-SIV for the other suite), and one MQTT hop alone for a payload
  as long as the input and as long as the envelope.
- **alternative**: what a user might do instead: ingest, encrypt the file as is with ECIES (X25519 + HKDF +
  AES-256-GCM), forward. No segmentation, hiding or compression.

Each measurement starts with warm-up repetitions that are run and discarded, then repeats under a
`RepetitionRule` (time budget and target precision of the median). Every pipeline case's envelope is opened
once and its restored image compared bit-exact with the input, so a broken pipeline cannot be benchmarked.
"""

from __future__ import annotations

import math
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from gateway.broker import EmbeddedBroker, find_mosquitto
from gateway.crypto.sbbe import SearchParams
from gateway.errors import ConfigError, InputError
from medshield_tools.bench import floors, images, machine
from medshield_tools.bench.mqtt import Hop
from medshield_tools.bench.stats import RepetitionRule, Series, Summary, repeat, summarize, timed

SUITES = ("sbbe-blowfish", "aes-256-siv")
DEFAULT_SIZES = (128, 256, 512, 1024, 2048, 4096)
DEFAULT_BITS = (8, 16)
QUICK_SIZES = (128, 256)
PAPER_POPULATION = 50
PAPER_SBBE_SECONDS = 0.67  # BioMedShield, Fig. 13: SBBE "completing the task in just 0.67 s"
REFERENCE_MASK = "reference"
CIPHER_FLOOR = {"sbbe-blowfish": "blowfish-ctr", "aes-256-siv": "aes-siv"}
INGEST, FORWARD, PROTECT = "ingest", "publish→receive", "protect"


class Progress(Protocol):
    """Told how many cases there are, then after every repetition (warm-ups included) and every finished case."""

    def start(self, total_cases: int) -> None: ...

    def repetition(self, label: str, count: int) -> None: ...

    def case_done(self) -> None: ...


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long to try."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    bits: tuple[int, ...] = DEFAULT_BITS
    suites: tuple[str, ...] = SUITES
    backends: tuple[str, ...] | None = None
    """Inference backends to run the pipeline on; None = every available one."""
    paper_population: int = PAPER_POPULATION
    rule: RepetitionRule = field(default_factory=RepetitionRule)
    memory: bool = True
    note: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """Tiny sizes and few repetitions: seconds, for tests and smoke runs (figures not meaningful)."""
        base = cls(
            sizes=QUICK_SIZES,
            rule=RepetitionRule(warmup=1, min_reps=3, max_reps=5, budget_s=0.5, target_rel_ci=0.5),
        )
        return replace(base, **overrides)


@dataclass
class Measurement:
    """One measured case at one image size."""

    size: int
    bits: int
    kind: str  # "pipeline" | "floor" | "alternative"
    name: str
    suite: str | None
    backend: str | None
    series: Series
    payload_bytes: int
    input_bytes: int
    peak_memory_bytes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Summary:
        return summarize(self.series.total, self.series.warmup)

    def stage(self, name: str) -> Summary | None:
        values = self.series.stages.get(name)
        return summarize(values, self.series.warmup) if values else None

    def key(self) -> tuple[Any, ...]:
        return (self.size, self.bits, self.kind, self.name, self.suite, self.backend)


@dataclass
class BenchResult:
    config: BenchConfig
    machine: dict[str, Any]
    started: str
    finished: str = ""
    wall_s: float = 0.0
    mask_source: dict[str, str] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    peak_rss_bytes: int = 0

    def find(
        self, size: int, bits: int, kind: str, name: str, suite: str | None = None, backend: str | None = None
    ) -> Measurement | None:
        for m in self.measurements:
            if m.key() == (size, bits, kind, name, suite, backend):
                return m
        return None

    def ratios(self) -> list[dict[str, Any]]:
        """Per size, bit depth, suite and backend: pipeline / sum of floors, pipeline / alternative, SBBE figures."""
        out: list[dict[str, Any]] = []
        for m in self.measurements:
            if m.kind != "pipeline" or m.name != "pipeline":
                continue
            size, bits, suite, backend = m.size, m.bits, m.suite, m.backend
            e2e = m.total.p50
            parts = {
                "model": self.find(size, bits, "floor", "model", None, backend),
                "cipher": self.find(size, bits, "floor", CIPHER_FLOOR[suite or SUITES[0]], suite, None),
                "mqtt-input": self.find(size, bits, "floor", "mqtt-input"),
                "mqtt-envelope": self.find(size, bits, "floor", "mqtt-envelope", suite, None),
            }
            floors_sum = sum(p.total.p50 for p in parts.values() if p is not None)
            alt = self.find(size, bits, "alternative", "aes-gcm-forward")
            row: dict[str, Any] = {
                "size": size,
                "bits": bits,
                "suite": suite,
                "backend": backend,
                "pipeline_p50_s": e2e,
                "floors_sum_p50_s": floors_sum,
                "floors_included": [k for k, v in parts.items() if v is not None],
                "pipeline_over_floors": e2e / floors_sum if floors_sum > 0 else math.nan,
                "alternative_p50_s": alt.total.p50 if alt else math.nan,
                "pipeline_over_alternative": e2e / alt.total.p50 if alt else math.nan,
            }
            search = m.stage("seal.search")
            row["search_p50_s"] = search.p50 if search else math.nan
            paper = self.find(size, bits, "pipeline", f"pipeline-N{self.config.paper_population}", suite, backend)
            if paper is not None:
                paper_search = paper.stage("seal.search")
                paper_seal = paper.stage("seal")
                row["paper_population"] = self.config.paper_population
                row["search_paper_p50_s"] = paper_search.p50 if paper_search else math.nan
                row["search_paper_over_default"] = (
                    paper_search.p50 / search.p50 if paper_search and search and search.p50 > 0 else math.nan
                )
                row["sbbe_paper_p50_s"] = paper_seal.p50 if paper_seal else math.nan
                row["sbbe_paper_over_0.67s"] = paper_seal.p50 / PAPER_SBBE_SECONDS if paper_seal else math.nan
            out.append(row)
        return out


# ---------------------------------------------------------------------------------------------------------
# Inference backends and the segmenter


def available_backends() -> list[str]:
    """Inference backends usable here, fastest first (GPU ones only where a GPU and their runtime are present)."""
    try:
        from gateway.inference import AUTO_ORDER
        from gateway.inference import available_backends as reasons_by_backend
    except ImportError:
        return _detect_backends()
    reasons = reasons_by_backend()
    ordered = [name for name in AUTO_ORDER if name in reasons] + [name for name in reasons if name not in AUTO_ORDER]
    return [name for name in ordered if reasons[name] is None]


def _detect_backends() -> list[str]:
    """Where `gateway.inference` is not installed: what ONNX Runtime and TensorRT report."""
    found = []
    try:
        import onnxruntime as ort

        providers = set(ort.get_available_providers())
    except ImportError:
        providers = set()
    try:
        import tensorrt  # noqa: F401

        found.append("tensorrt")
    except ImportError:
        pass
    if "TensorrtExecutionProvider" in providers:
        found.append("tensorrt-ep")
    if "CUDAExecutionProvider" in providers:
        found.append("cuda")
    found.append("cpu")
    return found


SegmentFn = Callable[[Any], np.ndarray]


def load_segmenter(backend: str) -> tuple[SegmentFn | None, str]:
    """DS-Net on `backend` as a callable, or (None, why not) when the model or its runtime is missing."""
    try:
        from gateway.segment import Segmenter
    except ImportError as exc:
        return None, f"gateway.segment unavailable ({exc.name or exc})"
    try:
        segmenter = Segmenter(backend=backend)
    except (ConfigError, OSError, RuntimeError, ValueError) as exc:
        return None, f"segmenter on {backend} unavailable: {type(exc).__name__}: {exc}"
    return segmenter.predict, f"DS-Net ({backend})"


# ---------------------------------------------------------------------------------------------------------
# Measurements


def _peak_memory(fn: Callable[[], Any]) -> int:
    """Peak Python/numpy heap allocated during one call (tracemalloc), in bytes."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    if not was_tracing:
        tracemalloc.stop()
    return max(0, peak - base)


# The sealer's own timings that are parts of the pipeline's `seal` lap (its key agreement is the pipeline's
# separate `keys` lap).
SEAL_PARTS = ("seal.search", "seal.encrypt")


def _leaf_stages(timings: Mapping[str, float]) -> dict[str, float]:
    """The pipeline's own timings plus `seal.other` (seal minus search and encrypt), so leaves sum to the whole.

    A search run before `seal` (`Sealer.choose_key`) counts in `seal` by its CPU time (`seal.search_cpu`), so
    that is its leaf too; its wall time, which a busy machine stretches, is kept as `seal.search_wall`."""
    out = dict(timings)
    if "seal.search_cpu" in timings:
        out["seal.search_wall"] = timings.get("seal.search", 0.0)
        out["seal.search"] = timings["seal.search_cpu"]
    if "seal" in timings:
        out["seal.other"] = max(0.0, timings["seal"] - sum(out.get(k, 0.0) for k in SEAL_PARTS))
    return out


class Runner:
    """Runs the plan of one benchmark; holds the broker hop and the recipient for the whole run."""

    def __init__(self, config: BenchConfig, hop: Hop, progress: Progress | None = None) -> None:
        from gateway.crypto.origin import GatewayKey, TrustedGateways
        from gateway.crypto.recipients import generate_recipient

        self.config = config
        self.hop = hop
        self.progress = progress
        self.private_key, self.card = generate_recipient("bench", floors.random_key)
        self.signer = GatewayKey.generate("bench", floors.random_key)
        self.gateways = TrustedGateways([self.signer.card])
        self.ecies = floors.EciesRecipient.generate()

    def _repeat(self, label: str, trial: Callable[[], tuple[float, dict[str, float]]]) -> Series:
        count = 0

        def tick() -> None:
            nonlocal count
            count += 1
            if self.progress:
                self.progress.repetition(label, count)

        return repeat(trial, self.config.rule, tick)

    def pipeline(
        self,
        image: images.BenchImage,
        suite: str,
        backend: str | None,
        segment: SegmentFn | None,
        *,
        name: str = "pipeline",
        sbbe_params: SearchParams = SearchParams(),
    ) -> Measurement:
        from gateway.crypto.envelope import peek
        from gateway.pipeline import open_, protect

        source = {"topic": f"{self.hop.prefix}/scanner", "scanner": "bench"}

        def run_protect(data: bytes):  # type: ignore[no-untyped-def]
            return protect(
                data,
                self.card,
                signer=self.signer,
                suite=suite,
                mask=None if segment else image.lesion_mask,
                segmenter=segment,
                source=source,
                sbbe_params=sbbe_params,
            )

        # Correctness first: an envelope that does not open to the bit-exact input is not worth timing.
        first = run_protect(image.data)
        opened = open_(first.envelope, self.private_key, gateways=self.gateways, restore_original=True)
        from gateway import codecs

        restored = codecs.decode(opened.original or b"").pixels
        if not np.array_equal(restored, image.pixels):
            raise RuntimeError(f"{name} {suite} {image.name}: restored image differs from the input")

        def trial() -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            raw, ingest_s, _ = self.hop.send(image.data, "scanner")
            t0 = time.perf_counter()
            result = run_protect(raw)
            protect_s = time.perf_counter() - t0
            _, forward_s, delivered_at = self.hop.send(result.envelope, "cloud")
            stages = {INGEST: ingest_s, PROTECT: protect_s, FORWARD: forward_s, **_leaf_stages(result.timings)}
            return delivered_at - start, stages

        label = f"{name} {suite} {backend or REFERENCE_MASK} {image.name}"
        series = self._repeat(label, trial)
        peak = _peak_memory(lambda: run_protect(image.data)) if self.config.memory else None
        header_params = {k: v for k, v in opened.header.get("sbbe", {}).items() if k != "genome"}
        return Measurement(
            size=image.pixels.shape[0],
            bits=image.bits,
            kind="pipeline",
            name=name,
            suite=suite,
            backend=backend,
            series=series,
            payload_bytes=len(first.envelope),
            input_bytes=len(image.data),
            peak_memory_bytes=peak,
            info={
                "lesion_pixels": first.lesion_pixels,
                "plaintext_bytes": len(peek(first.envelope).body),
                "search_params": header_params,
                "mask": "DS-Net" if segment else REFERENCE_MASK,
            },
        )

    def payload_sizes(self, image: images.BenchImage, suite: str) -> tuple[int, int]:
        """(plaintext bytes, envelope bytes) of this image under `suite`, from one untimed `protect` on the
        reference mask: the payload lengths the cipher and MQTT floors are measured at."""
        from gateway.crypto.envelope import peek
        from gateway.pipeline import protect

        result = protect(image.data, self.card, signer=self.signer, suite=suite, mask=image.lesion_mask)
        return len(peek(result.envelope).body), len(result.envelope)

    def model_floor(self, image: images.BenchImage, backend: str, segment: SegmentFn) -> Measurement:
        from gateway import codecs

        decoded = codecs.decode(image.data)
        series = self._repeat(f"model {backend} {image.name}", timed(lambda: segment(decoded)))
        return self._floor(image, "model", None, backend, series, len(image.data))

    def cipher_floor(self, image: images.BenchImage, suite: str, length: int) -> Measurement:
        buffer = floors.random_key(length)
        if suite == "sbbe-blowfish":
            key = floors.random_key(floors.BLOWFISH_KEY_BYTES)

            def fn() -> Any:
                return floors.blowfish_ctr(key, buffer)
        else:
            key = floors.random_key(64)

            def fn() -> Any:
                return floors.aes_siv(key, buffer)
        name = CIPHER_FLOOR[suite]
        series = self._repeat(f"{name} {image.name}", timed(fn))
        return self._floor(image, name, suite, None, series, length)

    def mqtt_floor(self, image: images.BenchImage, name: str, suite: str | None, length: int) -> Measurement:
        payload = floors.random_key(length)

        def trial() -> tuple[float, dict[str, float]]:
            _, seconds, _ = self.hop.send(payload, "floor")
            return seconds, {}

        series = self._repeat(f"{name} {image.name}", trial)
        return self._floor(image, name, suite, None, series, length)

    def alternative(self, image: images.BenchImage) -> Measurement:
        first = floors.ecies_gcm_encrypt(image.data, self.ecies.public)
        if floors.ecies_gcm_decrypt(first, self.ecies.private) != image.data:
            raise RuntimeError("ECIES round trip failed")

        def trial() -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            raw, ingest_s, _ = self.hop.send(image.data, "scanner")
            t0 = time.perf_counter()
            blob = floors.ecies_gcm_encrypt(raw, self.ecies.public)
            encrypt_s = time.perf_counter() - t0
            _, forward_s, delivered_at = self.hop.send(blob, "cloud")
            return delivered_at - start, {INGEST: ingest_s, "encrypt": encrypt_s, FORWARD: forward_s}

        series = self._repeat(f"aes-gcm-forward {image.name}", trial)
        peak = (
            _peak_memory(lambda: floors.ecies_gcm_encrypt(image.data, self.ecies.public))
            if self.config.memory
            else None
        )
        return self._floor(image, "aes-gcm-forward", None, None, series, len(first), kind="alternative",
                           peak_memory_bytes=peak)

    @staticmethod
    def _floor(
        image: images.BenchImage, name: str, suite: str | None, backend: str | None, series: Series, payload: int,
        *, kind: str = "floor", peak_memory_bytes: int | None = None,
    ) -> Measurement:
        return Measurement(
            size=image.pixels.shape[0],
            bits=image.bits,
            kind=kind,
            name=name,
            suite=suite,
            backend=backend,
            series=series,
            payload_bytes=payload,
            input_bytes=len(image.data),
            peak_memory_bytes=peak_memory_bytes,
        )


def count_cases(config: BenchConfig, backends: Sequence[str], with_model: bool) -> int:
    """How many measurements `run` makes (a progress bar's total)."""
    per_suite = len(backends) + 2  # pipeline per backend, cipher floor, MQTT hop for the envelope
    per_image = 2 + len(config.suites) * per_suite  # MQTT hop for the input, the alternative
    per_image += len(backends) if with_model else 0
    per_image += 1 if "sbbe-blowfish" in config.suites else 0  # the paper's population
    return len(config.sizes) * len(config.bits) * per_image


def iter_images(config: BenchConfig) -> Iterator[images.BenchImage]:
    for size in config.sizes:
        for bits in config.bits:
            yield images.ct_image(size, bits)


def run(
    config: BenchConfig, progress: Progress | None = None, on_case: Callable[[Measurement], None] | None = None
) -> BenchResult:
    """Measure everything `config` asks for, through a private mosquitto; returns every sample and summary."""
    for suite in config.suites:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r} (choose from {', '.join(SUITES)})")
    started = time.perf_counter()
    backends = list(config.backends) if config.backends else available_backends()
    segmenters: dict[str, SegmentFn | None] = {}
    mask_source: dict[str, str] = {}
    for backend in backends:
        segmenters[backend], mask_source[backend] = load_segmenter(backend)
    with_model = any(fn is not None for fn in segmenters.values())
    if not with_model:
        # Without a model every backend would measure the same thing: run the pipeline once, on the reference mask.
        backends = [REFERENCE_MASK]
        segmenters = {REFERENCE_MASK: None}
        mask_source[REFERENCE_MASK] = "reference lesion mask (no segmentation model measured)"

    if progress:
        progress.start(count_cases(config, backends, with_model))
    with EmbeddedBroker() as broker:
        result = BenchResult(
            config=config,
            machine=machine.describe(config.note, find_mosquitto()),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            mask_source=mask_source,
        )
        with Hop(broker.host, broker.port) as hop:
            runner = Runner(config, hop, progress)

            def keep(m: Measurement) -> None:
                result.measurements.append(m)
                if progress:
                    progress.case_done()
                if on_case:
                    on_case(m)

            def attempt(
                image: images.BenchImage,
                suite: str,
                backend: str,
                name: str = "pipeline",
                params: SearchParams = SearchParams(),
            ) -> None:
                """One pipeline case; an input the pipeline refuses (e.g. the model's mask leaves no room for
                the payload) is recorded as skipped with its reason, and the run goes on."""
                try:
                    keep(
                        runner.pipeline(
                            image,
                            suite,
                            None if backend == REFERENCE_MASK else backend,
                            segmenters[backend],
                            name=name,
                            sbbe_params=params,
                        )
                    )
                except InputError as exc:
                    result.skipped.append(
                        {"image": image.name, "case": name, "suite": suite, "backend": backend, "reason": exc.reason,
                         "message": str(exc)}
                    )  # fmt: skip
                    if progress:
                        progress.case_done()

            for image in iter_images(config):
                result.images[image.name] = {
                    "size": image.pixels.shape[0],
                    "bits": image.bits,
                    "format": image.format,
                    "input_bytes": len(image.data),
                    "pixel_bytes": image.pixels.nbytes,
                    "lesion_pixels_reference": int(image.lesion_mask.sum()),
                    "origin": image.origin,
                }
                keep(runner.mqtt_floor(image, "mqtt-input", None, len(image.data)))
                keep(runner.alternative(image))
                for backend in backends:
                    segment = segmenters[backend]
                    if segment is not None:
                        keep(runner.model_floor(image, backend, segment))
                for suite in config.suites:
                    for backend in backends:
                        attempt(image, suite, backend)
                    if suite == "sbbe-blowfish" and config.paper_population:  # 0: not measured
                        paper = replace(SearchParams(), population=config.paper_population)
                        attempt(image, suite, backends[0], f"pipeline-N{config.paper_population}", paper)
                    plaintext_bytes, envelope_bytes = runner.payload_sizes(image, suite)
                    keep(runner.cipher_floor(image, suite, plaintext_bytes))
                    keep(runner.mqtt_floor(image, "mqtt-envelope", suite, envelope_bytes))
    result.finished = datetime.now(UTC).isoformat(timespec="seconds")
    result.wall_s = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result.peak_rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    return result
