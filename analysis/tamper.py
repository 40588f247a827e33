"""Camera tamper detection from image statistics: ``covered``, ``defocused``, ``moved``, ``frozen``.

One :class:`TamperDetector` per camera, fed every analysed frame in time order.
:meth:`TamperDetector.update` returns ``{kind: confidence}`` for the kinds it sees in this frame
(at most one kind — the most specific explanation — so one incident gives one event; the rules
debounce it).  The baseline is learned from the first ``learn_frames`` frames that look normal and
then follows the scene slowly while no tamper is seen.

* ``covered``: the picture is nearly uniform (grey-level standard deviation below
  ``covered_std`` and far below the baseline), or nearly black, or its edge density collapsed to
  below ``covered_edges`` of the baseline while the contrast fell too.
* ``defocused``: Laplacian variance (sharpness) below ``defocus_ratio`` of the baseline while the
  contrast stays (so it is blur, not a cover).
* ``moved``: the phase correlation of the gradient image against the reference frame finds a
  shift larger than ``moved_shift`` (fraction of the width), or the picture no longer
  correlates with the reference at all (``moved_response``) while it is neither covered nor
  blurred.
* ``frozen``: consecutive frames identical (mean absolute difference of the 160x120 grey
  thumbnails below ``frozen_diff`` grey levels; one isolated difference below ``frozen_blip``
  is tolerated — an encoder key frame re-coding a frozen picture) for ``frozen_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class TamperConfig:
    """Thresholds (tuned on the sample clips; see docs/analysis.md)."""

    learn_frames: int = 4
    covered_std: float = 14.0
    covered_std_ratio: float = 0.35
    covered_dark: float = 18.0
    covered_edges: float = 0.12
    defocus_ratio: float = 0.30
    defocus_std_ratio: float = 0.5
    moved_shift: float = 0.04
    moved_min_response: float = 0.04
    moved_response: float = 0.0
    frozen_diff: float = 0.1
    frozen_blip: float = 1.0
    frozen_seconds: float = 5.0
    baseline_alpha: float = 0.05
    ref_refresh_s: float = 30.0


@dataclass
class FrameStats:
    """Image statistics of one frame (exposed for tests and tuning)."""

    mean: float
    std: float
    edges: float
    sharpness: float
    shift: float = 0.0
    response: float = 1.0
    diff: float = 255.0


def _gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA)


def _grad(g: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


class TamperDetector:
    """Per-camera tamper state (module contract)."""

    SMALL = (160, 120)
    SHARP = (320, 240)

    def __init__(self, cfg: TamperConfig | None = None):
        self.cfg = cfg or TamperConfig()
        self._learn: list[FrameStats] = []
        self.base: FrameStats | None = None
        self._ref: np.ndarray | None = None
        self._ref_t = 0.0
        self._prev: np.ndarray | None = None
        self._frozen_since: float | None = None
        self._frozen_blips = 0
        self._window = cv2.createHanningWindow(self.SMALL, cv2.CV_32F)
        self.last: FrameStats | None = None

    @property
    def learned(self) -> bool:
        return self.base is not None

    def stats(self, frame: np.ndarray) -> tuple[FrameStats, np.ndarray]:
        small = _gray(frame, self.SMALL)
        sharp = _gray(frame, self.SHARP)
        mean, std = cv2.meanStdDev(small)
        edges = cv2.Canny(small, 50, 150)
        lap = cv2.Laplacian(sharp, cv2.CV_32F)
        return (
            FrameStats(
                mean=float(mean[0][0]),
                std=float(std[0][0]),
                edges=float(np.count_nonzero(edges)) / edges.size,
                sharpness=float(lap.var()),
            ),
            small,
        )

    def update(self, t: float, frame: np.ndarray) -> dict[str, float]:
        """Statistics of ``frame`` at time ``t`` → ``{kind: confidence}`` (empty when normal)."""
        c = self.cfg
        st, small = self.stats(frame)
        # frozen: identical consecutive frames for frozen_seconds
        if self._prev is not None:
            st.diff = float(cv2.absdiff(small, self._prev).mean())
        self._prev = small
        if st.diff <= c.frozen_diff:
            self._frozen_blips = 0
            if self._frozen_since is None:
                self._frozen_since = t
        elif self._frozen_since is not None and st.diff <= c.frozen_blip and self._frozen_blips < 1:
            # one small difference inside a frozen run: an encoder key frame re-coding the
            # same picture, not a live camera
            self._frozen_blips += 1
        else:
            self._frozen_since = None
        self.last = st
        b = self.base
        covered = st.mean < c.covered_dark or (
            st.std < c.covered_std and (b is None or st.std < c.covered_std_ratio * max(b.std, 1.0))
        )
        if b is not None and not covered:
            covered = st.edges < c.covered_edges * b.edges and st.std < 0.6 * b.std
        if covered:
            conf = 1.0 - min(1.0, st.std / max(c.covered_std * 2, 1.0))
            return {"covered": max(0.5, conf)}
        if b is None:
            self._learn.append(st)
            if len(self._learn) >= c.learn_frames:
                self.base = FrameStats(
                    mean=float(np.median([s.mean for s in self._learn])),
                    std=float(np.median([s.std for s in self._learn])),
                    edges=float(np.median([s.edges for s in self._learn])),
                    sharpness=float(np.median([s.sharpness for s in self._learn])),
                )
                self._set_ref(t, small)
            return {}
        if self._frozen_since is not None and t - self._frozen_since >= c.frozen_seconds:
            return {"frozen": 1.0}
        if st.sharpness < c.defocus_ratio * b.sharpness and st.std >= c.defocus_std_ratio * b.std:
            return {"defocused": float(min(1.0, 1.0 - st.sharpness / max(b.sharpness, 1e-6)))}
        assert self._ref is not None
        g = _grad(small.astype(np.float32))
        (dx, dy), resp = cv2.phaseCorrelate(self._ref, g, self._window)
        st.shift = float(np.hypot(dx / self.SMALL[0], dy / self.SMALL[1]))
        st.response = float(resp)
        if (st.shift > c.moved_shift and resp >= c.moved_min_response) or resp < c.moved_response:
            return {"moved": float(min(1.0, 0.5 + st.shift * 5))}
        # normal: follow the scene slowly
        a = c.baseline_alpha
        b.mean += a * (st.mean - b.mean)
        b.std += a * (st.std - b.std)
        b.edges += a * (st.edges - b.edges)
        b.sharpness += a * (st.sharpness - b.sharpness)
        if t - self._ref_t >= c.ref_refresh_s and st.shift < 0.005:
            self._set_ref(t, small)
        return {}

    def _set_ref(self, t: float, small: np.ndarray) -> None:
        self._ref = _grad(small.astype(np.float32))
        self._ref_t = t
