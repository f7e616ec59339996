"""QR transport: decode success vs what cameras, scanners and printers do, per error-correction level and
decoder; and how many codes a file of each size needs.

    .venv/bin/python benchmarks/qr_bench.py [--trials 4] [--out benchmarks/results/qr] [--quick]
    (make qr-bench installs libzbar0 and poppler-utils first)

Every test image is a real MedShield code: a part of `gateway.qr.format` holding random data filling one
symbol of the given version and level, drawn by `gateway.qr.render` at 4 pixels per module with a 4-module
quiet zone, on a white margin of 20 % of its side (a code on a page). Each trial draws new data (so a new
mask pattern) and new random placements. A trial succeeds when the decoder returns the exact text.

Axes (one parameter varied, the rest clean):
  noise        additive Gaussian noise, sigma in grey levels (0-255)
  blur         Gaussian blur, sigma in modules
  jpeg         JPEG quality
  rotation     degrees
  perspective  keystone: the top edge pulled in by this fraction of the side on each end, plus a random
               corner jitter of a fifth of it (a camera held at an angle)
  scale        pixels per module after area resampling (the rendered 4 down to below 1)
  occlusion    one solid square (black or white, alternating) covering this fraction of the symbol, placed
               at random where it does not touch a finder pattern
  print        printed to PDF at 0.5 mm per module (Pillow), rasterised by poppler's pdftoppm at this dpi
  print_scan   the same, then what a flatbed or phone adds: blur sigma 0.1 mm, noise sigma 8, JPEG 85

Decoders: `zbar` (pyzbar over Debian's libzbar0, one pass) and `medshield` (what `medshield qr decode` does:
zbar; where that reads nothing, the ArUco detector, then zbar on Otsu binarisation, blur then binarise, 2x up-
and down-scaling) everywhere; `opencv` (cv2.QRCodeDetector, one pass) and `opencv-aruco`
(cv2.QRCodeDetectorAruco, one pass) beside them at level Q version 40 and level M version 10.

Outputs in --out: robustness.csv (one row per config, decoder, axis, value: trials, successes, rate),
robustness.md (where each level stops decoding, decoder comparison, sizes), sizes.csv, qr_bench.json
(machine, library versions, configuration, everything above), robustness.png, decoders.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.qr import format as qf
from gateway.qr import render, scan
from medshield_tools.bench.machine import describe

MODULE_PX = render.DEFAULT_MODULE_PX
PRINT_MODULE_MM = 0.5

AXES: dict[str, list[float]] = {
    "noise": [0, 32, 64, 96, 128, 160],
    "blur": [0, 0.25, 0.4, 0.5, 0.75, 1.0],
    "jpeg": [75, 50, 30, 20, 10, 5],
    "rotation": [0, 10, 30, 45],
    "perspective": [0, 0.03, 0.05, 0.08, 0.1, 0.15],
    "scale": [4, 2.5, 2, 1.5, 1.25, 1.0, 0.8],
    "occlusion": [0, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.25],
    "print": [300, 150, 100, 75, 50],
    "print_scan": [300, 150, 100, 75, 50],
}
UNITS = {
    "noise": "sigma (grey levels)", "blur": "sigma (modules)", "jpeg": "quality", "rotation": "degrees",
    "perspective": "keystone (fraction of side)", "scale": "pixels per module", "occlusion": "fraction of symbol",
    "print": "dpi (0.5 mm modules)", "print_scan": "dpi (0.5 mm modules)",
}
# Configs: every level at version 40 (what envelopes use: the fewest codes) and at version 10 (a card).
CONFIGS: list[tuple[qf.Level, int]] = [(lv, 40) for lv in qf.LEVELS] + [("M", 10)]
# Where the four decoders are compared (elsewhere only zbar and the product's chain run).
COMPARE = {("Q", 40), ("M", 10)}
SIZES = [189, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 196608, 262144, 307200, 409600, 524288]


@dataclass(frozen=True)
class Code:
    text: str
    img: np.ndarray  # with its page margin
    box: tuple[int, int, int]  # symbol origin (x, y) and side in pixels, inside img
    modules: int


def make_code(level: qf.Level, version: int, rng: np.random.Generator) -> Code:
    room = qf.capacity_bytes(version, level)
    # Random bytes without the long zero runs python-qrcode 8.2 cannot encode (as ciphertext never has).
    data = rng.integers(1, 256, room, dtype=np.uint8).tobytes()
    p = qf.Plan(size=room, level=level, version=version, count=1, chunk=room)
    text = qf.split(data, "envelope", rng.bytes(16), p)[0]
    code = render.image(render.matrix(text, level, version), MODULE_PX)
    margin = code.shape[0] // 5
    img = np.pad(code, margin, constant_values=255)
    quiet = render.QUIET_ZONE_MODULES * MODULE_PX
    n = version * 4 + 17
    return Code(text=text, img=img, box=(margin + quiet, margin + quiet, n * MODULE_PX), modules=n)


def _jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8) if sigma else img


def _print(img: np.ndarray, dpi: float, work: Path, scan_like: bool, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    pdf = work / "page.pdf"
    Image.fromarray(img).save(pdf, format="PDF", resolution=MODULE_PX * 25.4 / PRINT_MODULE_MM)
    subprocess.run(["pdftoppm", "-r", str(int(dpi)), "-gray", "-png", "-singlefile", str(pdf), str(work / "r")],
                   check=True, capture_output=True)
    out = cv2.imread(str(work / "r.png"), cv2.IMREAD_GRAYSCALE)
    if scan_like:
        out = cv2.GaussianBlur(out, (0, 0), max(0.1 * dpi / 25.4, 0.3))
        out = _jpeg(_noise(out, 8, rng), 85)
    return out


def degrade(code: Code, axis: str, value: float, rng: np.random.Generator, work: Path, trial: int) -> np.ndarray:
    img = code.img
    h, w = img.shape
    if axis == "noise":
        return _noise(img, value, rng)
    if axis == "blur":
        return cv2.GaussianBlur(img, (0, 0), value * MODULE_PX) if value else img
    if axis == "jpeg":
        return _jpeg(img, value)
    if axis == "rotation":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), value, 1.0)
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    if axis == "perspective":
        x0, y0, side = code.box
        src = np.float32([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]])
        pull = value * side
        jitter = rng.uniform(-0.2, 0.2, (4, 2)) * pull
        dst = src + np.float32([[pull, 0], [-pull, 0], [0, 0], [0, 0]]) + jitter.astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst)
        return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    if axis == "scale":
        f = value / MODULE_PX
        return (
            cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            if f != 1
            else img
        )
    if axis == "occlusion":
        if not value:
            return img
        x0, y0, side = code.box
        block = int(round(np.sqrt(value) * side))
        finder = 8 * MODULE_PX
        out = img.copy()
        for _ in range(1000):
            bx, by = rng.integers(0, side - block + 1, 2)
            corners = [(0, 0), (side - finder, 0), (0, side - finder)]
            if all(
                bx >= fx + finder or bx + block <= fx or by >= fy + finder or by + block <= fy for fx, fy in corners
            ):
                break
        else:
            # Too large to miss every finder pattern: centre it (it then covers part of one or more).
            bx = by = (side - block) // 2
        out[y0 + by : y0 + by + block, x0 + bx : x0 + bx + block] = 0 if trial % 2 else 255
        return out
    if axis in ("print", "print_scan"):
        return _print(img, value, work, axis == "print_scan", rng)
    raise ValueError(axis)


def trial(img: np.ndarray, want: bytes, compare: bool) -> dict[str, bool]:
    """Which decoders read `want` from `img`. `medshield` starts with the same zbar pass, so a zbar success is
    its success too; only where zbar fails is the rest of its chain run. `compare` adds the OpenCV
    detectors on their own."""
    zbar_ok = want in [t for t, _ in scan.decoder("zbar")(img)]
    out = {"zbar": zbar_ok, "medshield": zbar_ok or want in scan.read(img, scan.decoder("zbar")).texts}
    if compare:
        out["opencv"] = want in [t for t, _ in scan.decoder("opencv")(img)]
        out["opencv-aruco"] = want in [t for t, _ in scan.decoder("opencv-aruco")(img)]
    return out


def _one_config(job: tuple[qf.Level, int, int, dict[str, list[float]], int]) -> list[dict[str, Any]]:
    level, version, trials, axes, seed = job
    compare = (level, version) in COMPARE
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng([seed, version, qf.LEVELS.index(level)])
    codes = [make_code(level, version, rng) for _ in range(trials)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for axis, values in axes.items():
            for value in values:
                ok: dict[str, int] = {}
                for t, code in enumerate(codes):
                    img = degrade(code, axis, value, rng, work, t)
                    for name, good in trial(img, code.text.encode(), compare).items():
                        ok[name] = ok.get(name, 0) + good
                for name, n in ok.items():
                    rows.append({"level": level, "version": version, "modules": codes[0].modules, "decoder": name,
                                 "axis": axis, "value": value, "trials": trials, "ok": n, "rate": n / trials})
    print(f"  level {level} version {version}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def robustness(trials: int, axes: dict[str, list[float]], configs: list[tuple[qf.Level, int]], seed: int,
               workers: int = 1) -> list[dict[str, Any]]:
    """Every config on its own seeded generator, so the figures do not depend on `workers`."""
    jobs = [(level, version, trials, axes, seed) for level, version in configs]
    if workers < 2:
        return [r for job in jobs for r in _one_config(job)]
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return [r for rows in pool.map(_one_config, jobs, chunksize=1) for r in rows]


def stops(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per config, decoder and axis: the harshest value still decoded every time, and the first value where
    no trial decoded (values are ordered from mild to harsh)."""
    out = []
    keys = sorted({(r["level"], r["version"], r["decoder"], r["axis"]) for r in rows},
                  key=lambda k: (k[1], qf.LEVELS.index(k[0]), k[2], list(AXES).index(k[3])))
    for key in keys:
        series = [r for r in rows if (r["level"], r["version"], r["decoder"], r["axis"]) == key]
        holds = None
        for r in series:
            if r["rate"] < 1:
                break
            holds = r["value"]
        fails = next((r["value"] for r in series if r["ok"] == 0), None)
        out.append({"level": key[0], "version": key[1], "decoder": key[2], "axis": key[3], "all_decode_up_to": holds,
                    "none_decode_from": fails})
    return out


def sizes() -> list[dict[str, Any]]:
    rows = []
    for size in SIZES:
        for level in qf.LEVELS:
            p = qf.plan(size, level, max_codes=qf.MAX_COUNT)
            rows.append({"bytes": size, "level": level, "codes": p.count, "version": p.version,
                         "within_default_limit": p.count <= qf.DEFAULT_MAX_CODES})
    return rows


def real_envelopes() -> list[dict[str, Any]]:
    """Sizes of real envelopes (`gateway.pipeline.protect`, AES-SIV, 8-bit noise images, which have no air
    around a body, so the paper's carrier rule) and of a card."""
    from gateway.crypto.origin import GatewayKey
    from gateway.crypto.recipients import generate_recipient
    from gateway.pipeline import protect
    from gateway.rng import SeededRandom

    _, card = generate_recipient("alice", SeededRandom(b"bench"))
    out = [{"what": "recipient card", "bytes": len(card.to_json().encode())}]
    for side in (64, 128, 256, 384, 512, 540):
        px = np.random.default_rng(side).integers(0, 256, (side, side), dtype=np.uint8)
        ok, png = cv2.imencode(".png", px)
        mask = np.zeros((side, side), bool)
        mask[: side // 8, : side // 8] = True
        env = protect(png.tobytes(), card, signer=GatewayKey.generate("bench", SeededRandom(b"bench-gw")), mask=mask,
                      suite="aes-256-siv", carrier_rule="non-lesion",
                      rng=SeededRandom(bytes([side % 256]))).envelope
        out.append({"what": f"envelope of a {side}x{side} 8-bit PNG (noise)", "bytes": len(env)})
    for row in out:
        for level in qf.LEVELS:
            try:
                p = qf.plan(row["bytes"], level)
                row[f"codes_{level}"] = p.count
            except qf.QRError:
                row[f"codes_{level}"] = f">{qf.DEFAULT_MAX_CODES} (refused)"
    return out


def timing_300kb() -> dict[str, Any]:
    """Wall time to encode and decode one ~300 KB envelope at the default level through PNG files."""
    from gateway import qr
    from gateway.crypto.origin import GatewayKey
    from gateway.crypto.recipients import generate_recipient
    from gateway.pipeline import protect
    from gateway.rng import SeededRandom

    _, card = generate_recipient("alice", SeededRandom(b"bench"))
    px = np.random.default_rng(0).integers(0, 256, (540, 540), dtype=np.uint8)
    ok, png = cv2.imencode(".png", px)
    mask = np.zeros((540, 540), bool)
    mask[:60, :60] = True
    env = protect(png.tobytes(), card, signer=GatewayKey.generate("bench", SeededRandom(b"bench-gw")), mask=mask,
                      suite="aes-256-siv", carrier_rule="non-lesion",
                  rng=SeededRandom(b"t")).envelope
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "e.msh").write_bytes(env)
        t0 = time.perf_counter()
        res = qr.encode_file(d / "e.msh", d / "codes")
        t1 = time.perf_counter()
        qr.decode_files(sorted(res.paths, reverse=True), d / "back.msh")
        t2 = time.perf_counter()
        assert (d / "back.msh").read_bytes() == env
    return {"bytes": len(env), "level": res.plan.level, "version": res.plan.version, "codes": res.plan.count,
            "encode_s": round(t1 - t0, 2), "decode_s": round(t2 - t1, 2)}


def versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def cmd(argv: list[str]) -> str | None:
        if not shutil.which(argv[0]):
            return None
        r = subprocess.run(argv, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else None

    return {
        "qrcode": dist("qrcode"), "pyzbar": dist("pyzbar"), "opencv-python-headless": dist("opencv-python-headless"),
        "numpy": dist("numpy"), "pillow": dist("pillow"), "matplotlib": dist("matplotlib"),
        "libzbar0 (dpkg)": cmd(["dpkg-query", "-W", "-f=${Version}", "libzbar0"]),
        "poppler-utils (pdftoppm -v)": cmd(["pdftoppm", "-v"]),
    }


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colours = dict(zip(qf.LEVELS, ("tab:red", "tab:orange", "tab:green", "tab:blue"), strict=False))
    for name, pick, title in (
        ("robustness.png", lambda r: r["decoder"] == "medshield",
         "medshield qr decode: success vs degradation (solid: version 40, dashed: version 10)"),
        ("decoders.png", lambda r: (r["level"], r["version"]) in COMPARE,
         "decoders compared (solid: level Q version 40, dashed: level M version 10)"),
    ):
        fig, axes = plt.subplots(3, 3, figsize=(15, 12))
        for ax, axis in zip(axes.ravel(), AXES, strict=False):
            sel = [r for r in rows if r["axis"] == axis and pick(r)]
            groups = sorted({(r["level"], r["version"], r["decoder"]) for r in sel},
                            key=lambda g: (-g[1], qf.LEVELS.index(g[0]), g[2]))
            for level, version, dec in groups:
                pts = [r for r in sel if (r["level"], r["version"], r["decoder"]) == (level, version, dec)]
                xs, ys = [p["value"] for p in pts], [p["rate"] for p in pts]
                if name == "robustness.png":
                    ax.plot(xs, ys, marker="o", color=colours[level], linestyle="-" if version == 40 else "--",
                            label=f"{level} v{version}")
                else:
                    ax.plot(xs, ys, marker="o", label=f"{dec} {level} v{version}",
                            linestyle="-" if version == 40 else "--",
                            color={"zbar": "tab:blue", "opencv": "tab:red", "opencv-aruco": "tab:purple",
                                   "medshield": "tab:green"}[dec])
            ax.set_title(axis)
            ax.set_xlabel(UNITS[axis])
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel("decode rate")
            if axis in ("jpeg", "scale", "print", "print_scan"):
                ax.invert_xaxis()  # harsher to the right everywhere
            ax.grid(alpha=0.3)
        axes.ravel()[0].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
        paths.append(out / name)
    return paths


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict[str, Any]], st: list[dict[str, Any]], size_rows: list[dict[str, Any]],
             real: list[dict[str, Any]], timing: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    lines = ["# QR transport: robustness study", "",
             f"Machine: {meta['machine']['cpu_model']}, {meta['machine']['usable_cores']} usable cores, "
             f"load average at start {meta['machine']['load_average_at_start']}. Trials per point: {meta['trials']}.",
             "Libraries: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), "",
             "## Where each level stops decoding (`medshield qr decode`)", "",
             "Each cell: the harshest value at which every trial decoded / the first value at which none did "
             "(— : never reached within the range tested).", ""]
    axes = list(AXES)
    lines.append("| level | version | " + " | ".join(f"{a} ({UNITS[a]})" for a in axes) + " |")
    lines.append("|---|---|" + "---|" * len(axes))
    for level, version in [c for c in CONFIGS if any((x["level"], x["version"]) == c for x in st)]:
        cells = []
        for a in axes:
            s = next(
                (
                    x
                    for x in st
                    if (x["level"], x["version"], x["decoder"], x["axis"]) == (level, version, "medshield", a)
                ),
                None,
            )
            cells.append("n/a" if s is None else f"{_fmt(s['all_decode_up_to'])} / {_fmt(s['none_decode_from'])}")
        lines.append(f"| {level} | {version} | " + " | ".join(cells) + " |")
    lines += ["", "## Decoders (mean decode rate over every axis and value)", "",
              "| decoder | " + " | ".join(f"{lv} v{v}" for lv, v in CONFIGS) + " | where all four ran |",
              "|---|" + "---|" * (len(CONFIGS) + 1)]
    for dec in ("zbar", "opencv", "opencv-aruco", "medshield"):
        cells = []
        for lv, v in CONFIGS:
            sel = [r["rate"] for r in rows if r["decoder"] == dec and r["level"] == lv and r["version"] == v]
            cells.append(f"{np.mean(sel):.3f}" if sel else "—")
        every = [r["rate"] for r in rows if r["decoder"] == dec and (r["level"], r["version"]) in COMPARE]
        lines.append(f"| {dec} | " + " | ".join(cells) + f" | {np.mean(every):.3f} |")
    lines += [
        "",
        f"## Codes needed per file size (version ≤ 40, default limit {qf.DEFAULT_MAX_CODES} codes)",
        "",
        "| bytes | " + " | ".join(f"{lv}: codes (version)" for lv in qf.LEVELS) + " |",
        "|---|" + "---|" * len(qf.LEVELS),
    ]
    for size in SIZES:
        cells = []
        for lv in qf.LEVELS:
            r = next(x for x in size_rows if x["bytes"] == size and x["level"] == lv)
            cells.append(f"{r['codes']} (v{r['version']})" + ("" if r["within_default_limit"] else " refused"))
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines += ["", "Real files:", "", "| file | bytes | " + " | ".join(f"codes at {lv}" for lv in qf.LEVELS) + " |",
              "|---|---|" + "---|" * len(qf.LEVELS)]
    for r in real:
        lines.append(f"| {r['what']} | {r['bytes']} | " + " | ".join(str(r[f'codes_{lv}']) for lv in qf.LEVELS) + " |")
    if timing:
        lines += [
            "",
            f"One {timing['bytes']}-byte envelope at level {timing['level']}: {timing['codes']} codes of version "
            f"{timing['version']}; encode {timing['encode_s']} s, decode (reversed order) {timing['decode_s']} s "
            "on this machine.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qr")
    ap.add_argument("--quick", action="store_true", help="one trial, two configs, three values per axis")
    ap.add_argument("--timing", action="store_true", help="also time encode + decode of a 300 KB envelope")
    ap.add_argument("--workers", type=int, default=1, help="processes (one config each at a time)")
    ap.add_argument("--note", default=None, help="free text about the machine's state (e.g. shared, under load)")
    args = ap.parse_args(argv)
    if not shutil.which("pdftoppm"):
        raise SystemExit("qr_bench: pdftoppm not found (apt-get install poppler-utils, or `make qr-bench`)")
    axes, configs, trials = AXES, CONFIGS, args.trials
    if args.quick:
        axes = {k: v[:: max(1, len(v) // 3)] for k, v in AXES.items()}
        configs, trials = [("M", 40), ("M", 10)], 1
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": describe(args.note), "versions": versions(), "trials": trials, "seed": args.seed,
            "workers": args.workers,
            "module_px": MODULE_PX, "print_module_mm": PRINT_MODULE_MM, "default_level": qf.DEFAULT_LEVEL,
            "default_max_codes": qf.DEFAULT_MAX_CODES}
    t0 = time.perf_counter()
    rows = robustness(trials, axes, configs, args.seed, args.workers)
    st = stops(rows)
    size_rows = sizes()
    real = real_envelopes()
    timing = timing_300kb() if args.timing else None
    meta["robustness_seconds"] = round(time.perf_counter() - t0, 1)
    with (args.out / "robustness.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (args.out / "sizes.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(size_rows[0]))
        w.writeheader()
        w.writerows(size_rows)
    (args.out / "qr_bench.json").write_text(json.dumps(
        {**meta, "axes": axes, "units": UNITS, "stops": st, "sizes": size_rows, "real_files": real,
         "timing_300kb": timing, "rows": rows}, indent=1) + "\n")
    (args.out / "robustness.md").write_text(markdown(rows, st, size_rows, real, timing, meta))
    plot(rows, args.out)
    print((args.out / "robustness.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
