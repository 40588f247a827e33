"""Pipeline core (gating, batching), live FrameSink pipeline, event bus — with a scripted detector."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from analysis.bus import EventBus
from analysis.core import AnalysisCore, analyze_frames, seat_crop_rects, split_detector
from analysis.detectors import Box
from analysis.events import EventUpdate
from analysis.live import AnalysisPipeline, camera_key
from config.models import DetectionConfig, RoomConfig, RulesConfig
from storage.common import CameraId
from storage.incident import EventLive


def room(n_cams: int = 1) -> RoomConfig:
    cams = [{"id": f"cam{i + 1}"} for i in range(n_cams)]
    seats = [{"id": f"S{i + 1}", "camera": f"cam{i + 1}",
              "polygon": [(0.2, 0.5), (0.8, 0.5), (0.8, 1.0), (0.2, 1.0)]} for i in range(n_cams)]
    return RoomConfig.model_validate({"id": "r1", "cameras": cams, "seats": seats})


class ScriptedDetector:
    """Reports one seated person, plus a phone when the frame's top-left pixel is 255."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        self.calls.append(len(frames))
        out = []
        for f in frames:
            boxes = [Box("person", 0.9, 0.4, 0.4, 0.6, 0.8)]
            if f[0, 0, 0] == 255:
                boxes.append(Box("cell phone", 0.7, 0.45, 0.6, 0.5, 0.65))
            out.append(boxes)
        return out


def textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(img, np.ones((10, 10, 1), dtype=np.uint8)))


def test_motion_gate_rechecks_still_scene_every_recheck_seconds() -> None:
    det = ScriptedDetector()
    core = AnalysisCore(det, RulesConfig(recheck_seconds=3.0), DetectionConfig(analysis_fps=2.0))
    core.add_camera("cam1", room(), "cam1")
    frame = textured()
    times = [i * 0.5 for i in range(41)]  # 20 s of an unchanging picture
    det_times = []
    for t in times:
        before = core.stats.detected
        core.process([("cam1", t, frame)])
        if core.stats.detected > before:
            det_times.append(t)
    assert det_times[0] == 0.0
    gaps = np.diff(det_times)
    assert gaps.max() <= 3.0 + 1e-9
    assert len(det_times) < len(times) / 3  # the gate does skip most frames
    assert core.stats.frames == len(times)


def test_motion_reruns_detector_and_phone_is_found() -> None:
    det = ScriptedDetector()
    rc = RulesConfig(open_k=2, open_n=3, close_m=2, recheck_seconds=30.0)
    frames = []
    for i in range(16):
        f = textured()
        if 4 <= i < 10:
            f = f.copy()
            f[:60, :80] = 255  # a visible change (and the scripted detector's phone trigger)
        frames.append((i * 0.5, f))
    events = analyze_frames(frames, room(), det, rc, DetectionConfig(analysis_fps=2.0))
    assert [(e.rule, e.seat) for e in events] == [("phone", "S1")]
    assert events[0].start_s == pytest.approx(2.0)
    assert events[0].end_s == pytest.approx(4.5)


def test_frames_are_thinned_to_analysis_fps_and_batched_across_cameras() -> None:
    det = ScriptedDetector()
    core = AnalysisCore(det, RulesConfig(), DetectionConfig(analysis_fps=2.0), motion_gate=False)
    r = room(3)
    for c in r.cameras:
        core.add_camera(c.id, r, c.id)
    f = textured()
    for i in range(30):  # 15 fps for 2 s
        core.process([(c.id, i / 15, f) for c in r.cameras])
    assert core.stats.frames == 3 * 4  # t = 0, 0.53, 1.0, 1.53 per camera
    assert det.calls == [3, 3, 3, 3]  # one call per round, all cameras together


def test_camera_key_forms() -> None:
    assert camera_key(CameraId("s1", "r1", "cam1")) == "s1/r1/cam1"
    assert camera_key(("s1", "r1", "cam1")) == "s1/r1/cam1"
    with pytest.raises(TypeError):
        camera_key(object())  # type: ignore[arg-type]  # what the check is for


# --- bus --------------------------------------------------------------------------------------


def live(n: int) -> EventLive:
    """The ``n``-th bus message (its number in ``details``)."""
    return EventLive(id=n, uid=f"u{n}", phase="updated", site="site1", room="r1", camera="cam1",
                     seat=None, rule="phone", kind=None, started_at=datetime.now(UTC), ended_at=None,
                     confidence=0.5, footage_start=None, footage_end=None, details={"n": n})


async def test_bus_slow_subscriber_loses_only_its_oldest_messages() -> None:
    bus = EventBus(maxsize=4)
    slow = bus.subscribe()
    fast = bus.subscribe(maxsize=100)
    for i in range(10):
        bus.publish(live(i))
    assert [fast.get_nowait().details["n"] for _ in range(10)] == list(range(10))
    assert [(await slow.get()).details["n"] for _ in range(4)] == [6, 7, 8, 9]
    assert slow.dropped == 6
    slow.close()
    bus.publish(live(10))
    assert bus.subscribers == 1


async def test_bus_async_iteration_and_threadsafe_publish() -> None:
    bus = EventBus()
    async with bus.subscribe() as sub:
        def publish() -> None:
            for i in range(3):
                bus.publish_threadsafe(live(i))

        t = threading.Thread(target=publish)
        t.start()
        got = []
        async for m in sub:
            got.append(m.details["n"])
            if len(got) == 3:
                break
        t.join()
    assert got == [0, 1, 2]
    assert bus.subscribers == 0


# --- live pipeline ----------------------------------------------------------------------------


class ListSink:
    def __init__(self) -> None:
        self.updates: list[EventUpdate] = []

    async def handle(self, update: EventUpdate) -> None:
        await asyncio.sleep(0)
        self.updates.append(update)


async def test_live_pipeline_publishes_events_and_camera_offline() -> None:
    now = [1000.0]
    sink = ListSink()
    rc = RulesConfig(open_k=2, open_n=3, close_m=2, offline_seconds=5.0)
    pipe = AnalysisPipeline(ScriptedDetector(), [("site1", room())], rules_cfg=rc, sink=sink,
                            detection_cfg=DetectionConfig(analysis_fps=2.0), clock=lambda: now[0])
    await pipe.start()
    ref = ("site1", "r1", "cam1")
    phone_frame = textured()
    phone_frame[:60, :80] = 255
    for i in range(8):
        now[0] = 1000.0 + i * 0.5
        # frames submitted from another thread, 3 per interval (2 are thinned away)
        def submit(t: float = now[0]) -> None:
            for k in range(3):
                pipe.submit(ref, t + k / 6, phone_frame)

        th = threading.Thread(target=submit)
        th.start()
        th.join()
        await pipe.step()
    now[0] += 10.0  # frames stop
    await pipe.step()
    await pipe.stop()
    # the pipeline hands every update to its sink, in order (the hub's sink writes and publishes)
    msgs = [u.event for u in sink.updates]
    assert [(u.action, u.event.rule) for u in sink.updates] == [
        ("opened", "phone"), ("opened", "camera_offline")]
    assert msgs[0].site == "site1" and msgs[0].seat == "S1" and msgs[0].started_at
    # frames resume: offline incident closes
    pipe.submit(ref, now[0], phone_frame)
    ups = await pipe.step()
    assert ("closed", "camera_offline") in [(u.action, u.event.rule) for u in ups]


def test_submit_ignores_unknown_cameras_and_never_blocks() -> None:
    pipe = AnalysisPipeline(ScriptedDetector(), [("site1", room())])
    pipe.submit(("site1", "r1", "nope"), 0.0, textured())
    assert pipe._pending == {}


# --- seat crops for phones ----------------------------------------------------------------------


class _PersonModel:
    """One person (at seat R of the two-seat room) per frame, whatever the picture."""

    labels = frozenset({"person"})

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Any]]:
        self.shapes += [f.shape for f in frames]
        return [[Box("person", 0.9, 0.6, 0.3, 0.8, 0.8)] for _ in frames]


class _SmallObjectModel:
    """Sees the white square as a phone only when it covers >= 0.5% of its input (a crop)."""

    labels = frozenset({"person", "cell phone"})

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def raw(self, frames: Sequence[np.ndarray], min_score: float) -> list[list[Any]]:
        out = []
        for f in frames:
            self.shapes.append(f.shape)
            ys, xs = np.nonzero(f[:, :, 0] == 255)
            h, w = f.shape[:2]
            if len(xs) / (h * w) >= 0.005:
                out.append([Box("cell phone", 0.8, xs.min() / w, ys.min() / h,
                                 (xs.max() + 1) / w, (ys.max() + 1) / h)])
            else:
                out.append([])
        return out


def _two_seat_room() -> RoomConfig:
    return RoomConfig.model_validate({"id": "r", "cameras": [{"id": "cam1"}], "seats": [
        {"id": "L", "camera": "cam1", "polygon": [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]},
        {"id": "R", "camera": "cam1", "polygon": [(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)]},
    ]})


def test_split_detector_sends_phone_models_to_seat_crops_and_maps_boxes_back() -> None:
    from analysis.detectors import OnnxDetector, Source

    pm, om = _PersonModel(), _SmallObjectModel()
    det = OnnxDetector([Source(pm, {"person": 0.4}), Source(om, {"cell phone": 0.3})])
    split = split_detector(det)
    assert split.crop is not None and split.crop is not det
    core = AnalysisCore(det, RulesConfig(), DetectionConfig(analysis_fps=2.0, seat_check_s=1.0),
                        snapshots=False, motion_gate=False)
    core.add_camera("c", _two_seat_room(), "cam1")
    assert core.cameras["c"].crops == seat_crop_rects(_two_seat_room(), "cam1")
    f = textured(3)
    f[300:330, 480:510] = 255  # 30x30 px: 0.3% of the frame, 0.9% of the crop of seat R
    core.process([("c", 0.0, f)])  # seats take turns (seat_check_s 1.0 = 2 frames at 2 fps): L
    assert core.stats.crops == 1
    assert [b for b in core.cameras["c"].boxes if b.label == "cell phone"] == []
    core.process([("c", 0.5, f)])  # R's turn
    phones = [b for b in core.cameras["c"].boxes if b.label == "cell phone"]
    assert len(phones) == 1  # seen on the crop of R only, and not on the whole frame
    p = phones[0]
    assert (p.x1, p.y1, p.x2, p.y2) == pytest.approx((0.75, 0.625, 0.797, 0.6875), abs=0.004)
    assert [b.label for b in core.cameras["c"].boxes].count("person") == 1
    # the phone model never saw the whole frame; the person model saw only the whole frame
    assert pm.shapes == [(480, 640, 3)] * 2
    assert len(om.shapes) == 2 and all(s[0] < 480 and s[1] < 640 for s in om.shapes)
    assert core.stats.crops == 2
    assignment = core.cameras["c"].rules.last_assignment
    assert assignment is not None and assignment.phones["R"] == [p]
    core.process([("c", 1.0, f)])  # L again: R's phone is reused until R's next turn
    assert core.stats.crops == 3
    assert [b for b in core.cameras["c"].boxes if b.label == "cell phone"] == [p]
    f[300:330, 480:510] = 0
    core.process([("c", 1.5, f)])  # R: the phone is gone
    assert core.stats.crops == 4
    assert [b for b in core.cameras["c"].boxes if b.label == "cell phone"] == []


def test_still_room_has_every_seat_rechecked_every_second_with_the_motion_gate_on() -> None:
    """The motion gate reuses the whole frame's people in a still picture, but the seat crops keep
    their schedule: each seat about once a second (issue #11's seat_check_interval_s <= 1), so a
    phone raised without moving the picture much is still seen within a second."""
    from analysis.detectors import OnnxDetector, Source

    pm, om = _PersonModel(), _SmallObjectModel()
    det = OnnxDetector([Source(pm, {"person": 0.4}), Source(om, {"cell phone": 0.3})])
    core = AnalysisCore(det, RulesConfig(recheck_seconds=3.0),
                        DetectionConfig(analysis_fps=2.0, seat_check_s=1.0), snapshots=False,
                        motion_gate=True)
    core.add_camera("c", _two_seat_room(), "cam1")
    f = textured(3)
    rng = np.random.default_rng(0)

    def noisy(img: np.ndarray) -> np.ndarray:  # sensor noise: not a frozen picture, not motion
        return np.clip(img.astype(np.int16) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)

    for k in range(12):  # 6 s of a still room at 2 fps
        core.process([("c", k * 0.5, noisy(f))])
    assert core.stats.detected == 2  # whole frame at 0 s and at the 3 s re-check only
    assert core.stats.crops == 12  # but each seat every second (they take turns)
    still = f.copy()
    still[300:330, 480:510] = 255  # a phone at R: 0.3 % of the frame, under the motion gate
    core.process([("c", 6.0, noisy(still))])  # the 6 s re-check of the whole frame; L's crop
    core.process([("c", 6.5, noisy(still))])  # gated; R's crop
    assert core.stats.detected == 3
    assert [b.label for b in core.cameras["c"].boxes].count("cell phone") == 1
    assert [b.label for b in core.cameras["c"].boxes].count("person") == 1


def test_seat_check_s_sets_how_often_each_seat_crop_is_re_detected() -> None:
    """``detection.seat_check_s``: 1.0 at 2 fps = each seat every other frame (the seats take
    turns); 0.5 (the default) = every seat on every analysed frame."""
    from analysis.detectors import OnnxDetector, Source

    crops = {}
    for check in (1.0, 0.5):
        det = OnnxDetector([Source(_PersonModel(), {"person": 0.4}),
                            Source(_SmallObjectModel(), {"cell phone": 0.3})])
        core = AnalysisCore(det, RulesConfig(), DetectionConfig(analysis_fps=2.0, seat_check_s=check),
                            snapshots=False, motion_gate=False)
        core.add_camera("c", _two_seat_room(), "cam1")
        for k in range(8):  # 4 s at 2 fps
            core.process([("c", k * 0.5, textured(k))])
        crops[check] = core.stats.crops
    assert crops == {1.0: 8, 0.5: 16}


def test_seat_motion_gate_skips_still_seats_until_the_recheck_and_sees_a_change_at_once() -> None:
    """``detection.seat_motion_gate`` (a hub analysing many cameras itself): a still seat's crop
    is re-detected every ``recheck_seconds`` instead of every second, but a change on that seat
    alone (a phone: ~1 % of the seat, 0.3 % of the frame) is detected on the seat's next turn."""
    from analysis.detectors import OnnxDetector, Source

    pm, om = _PersonModel(), _SmallObjectModel()
    det = OnnxDetector([Source(pm, {"person": 0.4}), Source(om, {"cell phone": 0.3})])
    core = AnalysisCore(det, RulesConfig(recheck_seconds=3.0),
                        DetectionConfig(analysis_fps=2.0, seat_check_s=1.0, seat_motion_gate=True),
                        snapshots=False, motion_gate=True)
    core.add_camera("c", _two_seat_room(), "cam1")
    f = textured(3)
    rng = np.random.default_rng(0)

    def noisy(img: np.ndarray) -> np.ndarray:
        return np.clip(img.astype(np.int16) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)

    for k in range(12):  # 6 s of a still room at 2 fps: L's turns at 0, 1, ... R's at 0.5, 1.5, ...
        core.process([("c", k * 0.5, noisy(f))])
    assert core.stats.crops == 4  # each seat at its first turn and at its 3 s re-check only
    assert core.stats.crops_reused == 8
    still = f.copy()
    still[300:330, 480:510] = 255  # a phone at R, under the whole-frame motion gate
    core.process([("c", 6.0, noisy(still))])  # L: re-check due (6.0 - 3.0)
    core.process([("c", 6.5, noisy(still))])  # R: 3.0 s after its last detection, but changed
    assert core.stats.crops == 6
    assert [b.label for b in core.cameras["c"].boxes].count("cell phone") == 1
    core.process([("c", 7.0, noisy(still))])  # L: unchanged since 6.0
    core.process([("c", 7.5, noisy(still))])  # R: the phone still there, unchanged since 6.5
    assert core.stats.crops == 6 and core.stats.crops_reused == 10
    assert [b.label for b in core.cameras["c"].boxes].count("cell phone") == 1  # reused, not lost
    moved = still.copy()
    moved[300:330, 480:510] = 0  # the phone put away at R
    core.process([("c", 8.0, noisy(moved))])  # L: unchanged, skipped
    core.process([("c", 8.5, noisy(moved))])  # R: changed: detected, the phone is gone
    assert core.stats.crops == 7 and core.stats.crops_reused == 11
    assert [b.label for b in core.cameras["c"].boxes].count("cell phone") == 0


def test_detectors_without_sources_are_used_whole_and_without_crops() -> None:
    det = ScriptedDetector()
    split = split_detector(det)
    assert split.frame is det and split.crop is None
    core = AnalysisCore(det, RulesConfig(), DetectionConfig(), snapshots=False)
    core.add_camera("c", room(), "cam1")
    assert core.cameras["c"].crops == []


def test_seat_crops_are_raised_above_the_seat_for_a_phone_held_up() -> None:
    (left, right) = seat_crop_rects(_two_seat_room(), "cam1")
    assert left[1] == pytest.approx(0.4) and right[1] == pytest.approx(0.4)  # 0.1 above 0.5
    assert left[0] == 0.0 and right[2] == 1.0 and left[3] == right[3] == 1.0


class CostlyDetector(ScriptedDetector):
    """ScriptedDetector that burns ``cost`` seconds of wall time per frame."""

    def __init__(self, cost: float) -> None:
        super().__init__()
        self.cost = cost

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        import time

        time.sleep(self.cost * len(frames))
        return super().detect(frames)


async def test_live_scheduler_bounds_rounds_and_serves_every_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    """More cameras than the detector can serve at analysis_fps: rounds stay within the budget,
    every camera is analysed in turn, and what is analysed is each camera's newest frame."""
    from analysis import live as P

    n = 12
    det = CostlyDetector(0.02)
    # one worker: the measured cost is then the detector's own (two would halve the wall time)
    pipe = AnalysisPipeline(det, [("site1", room(n))],
                            detection_cfg=DetectionConfig(analysis_fps=2.0, workers=1))
    pipe.core.motion_gate = False
    analysed: list[tuple[str, float]] = []
    orig = pipe.core.process

    def process(batch: Any) -> Any:
        analysed.extend((k, t) for k, t, _f in batch)
        return orig(batch)

    monkeypatch.setattr(pipe.core, "process", process)
    frame = textured()
    t = 1000.0
    sizes = []
    for _ in range(30):
        t += 0.5  # every camera due again before each round: 12 due, a round takes at most 8
        for c in range(n):  # every camera sends a newer frame before each round
            pipe.submit(("site1", "r1", f"cam{c + 1}"), t, frame)
        before = len(analysed)
        await pipe.step()
        sizes.append(len(analysed) - before)
    # measured, not assumed: from the 0.15 s prior down to the detector's 0.02 s (plus whatever a
    # loaded machine adds)
    assert 0.02 <= pipe.frame_cost_s < 0.08, pipe.frame_cost_s
    # rounds sized by the measured cost: ROUND_BUDGET_S / 0.02 s ≈ 12, capped by MAX_BATCH
    assert max(sizes) <= P.MAX_BATCH and min(sizes) >= 1
    per_cam = {k: [tt for kk, tt in analysed if kk == k] for k in pipe.rooms}
    assert all(len(v) >= 5 for v in per_cam.values())  # nobody starved
    # each analysed frame was the newest one when its round started (never a queued old frame)
    assert all(tt == pytest.approx(1000.0 + 0.5 * (i + 1)) for i, size in enumerate(sizes)
               for tt in [x[1] for x in analysed[sum(sizes[:i]):sum(sizes[:i]) + size]])
    assert pipe.dropped_frames > 0


class OverlapDetector(CostlyDetector):
    """CostlyDetector that records how many of its calls run at the same time."""

    def __init__(self, cost: float) -> None:
        super().__init__(cost)
        self.lock = threading.Lock()
        self.active = self.max_active = 0

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return super().detect(frames)
        finally:
            with self.lock:
                self.active -= 1


async def test_live_rounds_are_shared_by_the_workers() -> None:
    """``detection.workers``: a round's frames are dealt among worker threads (a camera's frames
    to one of them), so a hub analyses on every core: with 2 workers two detector calls run at
    once and a frame costs the round about half the wall time of 1 worker."""
    costs = {}
    for workers in (1, 2):
        det = OverlapDetector(0.04)
        pipe = AnalysisPipeline(det, [("site1", room(4))],
                                detection_cfg=DetectionConfig(analysis_fps=2.0, workers=workers))
        pipe.core.motion_gate = False
        assert pipe.workers == workers
        frame = textured()
        t = 1000.0
        for _ in range(16):
            t += 0.5
            for c in range(4):
                pipe.submit(("site1", "r1", f"cam{c + 1}"), t, frame)
            await pipe.step()
        assert det.max_active == workers
        assert pipe.analysed_frames >= 16 * 4 * 0.5  # the first rounds are sized by the 0.15 s prior
        costs[workers] = pipe.frame_cost_s
    assert costs[2] < costs[1] * 0.75, costs


async def test_rounds_give_every_worker_the_same_number_of_frames() -> None:
    """A round holds the same number of frames for each worker (sized by the measured time a worker
    spends on a frame), never e.g. 3 frames for 2 workers, which left one idle a third of every
    round and, by inflating the measured cost, shrank the next rounds further."""
    det = OverlapDetector(0.03)
    pipe = AnalysisPipeline(det, [("site1", room(21))],
                            detection_cfg=DetectionConfig(analysis_fps=2.0, workers=2))
    pipe.core.motion_gate = False
    sizes = []
    t = 1000.0
    for _ in range(12):
        t += 0.5
        for c in range(21):  # 21 cameras due every round: more than a round takes (<= 16)
            pipe.submit(("site1", "r1", f"cam{c + 1}"), t, textured())
        before = pipe.analysed_frames
        await pipe.step()
        sizes.append(pipe.analysed_frames - before)
    assert all(n % 2 == 0 for n in sizes), sizes
    assert 0.02 < pipe.worker_frame_s < 0.5  # measured from the 0.3 s prior toward ~0.03 s
    assert max(sizes[-3:]) > 2, sizes  # rounds grew once the cost was measured


class FailingDetector(ScriptedDetector):
    """ScriptedDetector that raises on frames marked with 7 in their first pixel."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Box]]:
        if any(f[0, 0, 0] == 7 for f in frames):
            raise RuntimeError("inference failed")
        return super().detect(frames)


async def test_a_failing_frame_costs_only_itself_not_the_rest_of_the_round() -> None:
    """A detector failure on one camera's frame is logged and skipped; the other frames of the
    round (also those the same worker would have analysed next) are analysed as usual."""
    pipe = AnalysisPipeline(FailingDetector(), [("site1", room(4))],
                            detection_cfg=DetectionConfig(analysis_fps=2.0, workers=2))
    pipe.core.motion_gate = False
    pipe.worker_frame_s = 0.01  # a round takes all four frames
    bad = textured()
    bad[0, 0] = 7
    for t in (1000.0, 1000.5):
        for c in range(4):
            pipe.submit(("site1", "r1", f"cam{c + 1}"), t, bad if c == 1 else textured())
        await pipe.step()
        boxes = {k.rsplit("/", 1)[1]: st.boxes for k, st in pipe.core.cameras.items()}
        assert boxes["cam2"] == []
        assert all(boxes[c] for c in ("cam1", "cam3", "cam4")), boxes
    assert pipe.analysed_frames == 8


def test_crop_people_are_added_only_when_not_already_seen() -> None:
    """Persons found on seat crops join the frame's persons unless they are a whole-frame
    person (or the same person on an overlapping crop)."""
    from analysis.core import merge_crop_people
    from analysis.detectors import Box

    seated = Box("person", 0.9, 0.20, 0.30, 0.40, 0.70)
    same = Box("person", 0.6, 0.21, 0.32, 0.41, 0.69)        # the seated one again
    behind = Box("person", 0.5, 0.36, 0.20, 0.52, 0.45)      # partly hidden, mostly outside
    behind_twice = Box("person", 0.45, 0.37, 0.21, 0.52, 0.46)
    assert merge_crop_people([seated], [same, behind, behind_twice]) == [behind]
    assert merge_crop_people([], [behind_twice, behind]) == [behind]


def test_split_detector_crop_part_reports_people_when_asked() -> None:
    from analysis.core import split_detector
    from analysis.detectors import load_detector

    det = load_detector()
    assert split_detector(det).crop.labels == {"cell phone"}  # type: ignore[union-attr]
    both = split_detector(det, crop_person_threshold=0.45).crop
    assert both is not None and both.labels == {"cell phone", "person"}  # type: ignore[attr-defined]
    assert both.thresholds["person"] == 0.45  # type: ignore[attr-defined]
