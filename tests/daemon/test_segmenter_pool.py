"""The daemon's segmenters: one inference session per protection worker by default (or one shared), and no
two concurrent calls ever on one session."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gateway.config import parse_config
from gateway.daemon.protect import InFlight, SegmenterPool, segmenter_pool
from gateway.inference._ort import default_threads
from gateway.segment import Segmenter


def _config(state: Path, **segmentation: object):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "gateway": {"device_id": "gw-pool", "state_dir": str(state)},
            "segmentation": {"backend": "cpu", **segmentation},
            "limits": {"workers": 3},
        },
        environ={},
    )


def test_one_session_per_worker_by_default_or_one_shared(tmp_path: Path) -> None:
    cores = default_threads()
    per_worker = segmenter_pool(_config(tmp_path))
    assert len(per_worker.segmenters) == 3
    assert len({id(s.runner.session) for s in per_worker.segmenters}) == 3  # type: ignore[attr-defined]
    # Each worker's session has its share of the cores; one with all of them serves an image segmented alone.
    assert {s.runner.threads for s in per_worker.segmenters} == {max(1, cores // 3)}  # type: ignore[attr-defined]
    assert [s.runner.threads for s in per_worker.alone] == ([cores] if cores // 3 < cores else [])  # type: ignore[attr-defined]
    fixed = segmenter_pool(_config(tmp_path, threads=2))
    assert len(fixed.segmenters) == 3 and not fixed.alone
    assert {s.runner.threads for s in fixed.segmenters} == {2}  # type: ignore[attr-defined]
    shared = segmenter_pool(_config(tmp_path, sessions="shared"))
    assert len(shared.segmenters) == 1 and not shared.alone


class _Watched(Segmenter):
    """A real segmenter that records how many calls run on it at once."""

    def __init__(self) -> None:
        super().__init__(backend="cpu", threads=1)
        self.active, self.most, self.calls = 0, 0, 0
        self._lock = threading.Lock()

    def predict(self, image):  # type: ignore[no-untyped-def]
        with self._lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            return super().predict(image)
        finally:
            with self._lock:
                self.active -= 1


@pytest.mark.parametrize(("sessions", "alone"), [(1, 0), (2, 0), (2, 1)])
def test_concurrent_calls_never_share_a_session(shared_data: Path, sessions: int, alone: int) -> None:
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        hu = npz["image_hu"][30].astype(np.float32)
    watched = [_Watched() for _ in range(sessions + alone)]
    pool = SegmenterPool(watched[:sessions], watched[sessions:])
    masks: list[np.ndarray] = []
    start = threading.Barrier(3)

    def call() -> None:
        start.wait()
        for _ in range(3):
            masks.append(pool.predict(hu))

    threads = [threading.Thread(target=call) for _ in range(3)]  # more callers than sessions: some wait
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(masks) == 9 and all(np.array_equal(m, masks[0]) for m in masks)
    assert sum(w.calls for w in watched) == 9
    assert max(w.most for w in watched) == 1
    if alone:
        # A call that finds no other running takes the session with all the cores.
        before = watched[-1].calls
        pool.predict(hu)
        assert watched[-1].calls == before + 1
    with pytest.raises(ValueError):
        SegmenterPool([])


def test_in_flight_tells_a_call_whether_it_entered_alone() -> None:
    in_flight = InFlight()
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with in_flight.enter() as alone:
            seen.append(alone)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with in_flight.enter() as alone:
        seen.append(alone)  # entered while the first is inside
    release.set()
    thread.join()
    with in_flight.enter() as alone:
        seen.append(alone)  # the first has left
    assert seen == [True, False, True]



def test_the_daemon_protects_an_image_alone_with_the_side_thread_and_others_without(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import pipeline
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.daemon import pipeline_protect_fn
    from gateway.rng import SeededRandom
    from medshield_tools.scanner_sim import dicom_from_hu

    _, card = save_recipient(tmp_path, generate_recipient("pool-rx", SeededRandom(b"pool"))[0])
    config = parse_config({"gateway": {"device_id": "gw-pool", "state_dir": str(tmp_path / "state")},
                           "protection": {"recipients": [str(card)]}, "limits": {"workers": 2}}, environ={})
    protect = pipeline_protect_fn(config)
    real_protect, seen = pipeline.protect, []
    first_inside, second_done = threading.Event(), threading.Event()

    def watched(*args, overlap=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(overlap)
        if len(seen) == 1:  # the first image stays in protection until the second has been protected
            first_inside.set()
            second_done.wait(60)
        return real_protect(*args, overlap=overlap, **kwargs)

    monkeypatch.setattr(pipeline, "protect", watched)
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        data = dicom_from_hu(npz["image_hu"][30], instance=30)

    def one(n: int) -> None:
        protect(data, message_id=f"00000000-0000-4000-8000-{n:012d}", source={"topic": "t"})

    first = threading.Thread(target=one, args=(1,))
    first.start()
    assert first_inside.wait(60)
    one(2)  # while the first is in protection
    second_done.set()
    first.join(60)
    one(3)  # alone again
    assert [overlap is not None for overlap in seen] == [True, False, True]
