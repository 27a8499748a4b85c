"""Deterministic synthetic infrared + visible street scenes, for tests and the demo (no real data needed).

A scene has a sky, a row of textured buildings on the horizon, a perspective road with dashed lane marks, and people,
cars and bikes (some ridden) of varied size and position; nearer objects are drawn last, so they occlude farther ones.

The three conditions differ in what each modality shows:

- ``day``: VIS colours tell the classes apart (grey road, brick/concrete buildings, red-ish people, blue/yellow cars,
  green bikes); IR shows the same objects with weaker contrast (the sun warms the background).
- ``night``: VIS is dark and noisy, with a few glare spots from street lamps. People, cars and bikes are *not drawn*
  in the night VIS image beyond a 4 % ghost of their day colours: the visible image is essentially the empty
  street, so a visible-only model cannot find them. IR shows them bright on a cool background (people hottest,
  engines and tyres hot, car bodies and bikes warm).
- ``fog``: VIS is washed out towards a grey airlight with the same near-invisible objects; IR as by day, slightly
  attenuated.

So on night (and fog) scenes an IR+VIS model has information that a VIS-only model lacks, which is what the demo
measures. All drawing is vectorised numpy on per-object bounding boxes: a 256x320 scene takes a few milliseconds.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .pairs import CONDITIONS, PairRecord

SYNTHETIC_CLASSES = ("background", "road", "building", "person", "car", "bike")
"""Label values: 0 background (sky, pavement), 1 road (incl. lane marks), 2 building, 3 person, 4 car, 5 bike."""
SYNTHETIC_PALETTE = [(0, 0, 0), (128, 64, 128), (70, 70, 70), (220, 20, 60), (0, 0, 142), (119, 11, 32)]
BACKGROUND, ROAD, BUILDING, PERSON, CAR, BIKE = range(6)
OBJECT_CLASSES = (PERSON, CAR, BIKE)
CONDITION_LETTERS = {"day": "D", "night": "N", "fog": "F"}

# IR materials: the thermal image is a per-condition lookup of these, plus per-instance and smooth noise.
(SKY, PAVEMENT, ASPHALT, PAINT, WALL, WINDOW, SKIN, CLOTH, CAR_BODY, GLASS, ENGINE, TYRE, BIKE_FRAME) = range(13)
# Grey levels per material; rows day / night. Fog uses the day row pulled towards its mean (see _render_ir).
_IR_LUT = {
    "day": np.array([70, 112, 124, 112, 104, 108, 178, 160, 140, 118, 182, 172, 150], np.float32),
    "night": np.array([22, 52, 58, 50, 56, 92, 222, 200, 118, 70, 215, 190, 165], np.float32),
}
_MIN_VISIBLE_PIXELS = 12  # an instance hidden below this is dropped from the boxes

_PERSON_SHIRTS = np.array([(200, 30, 30), (230, 110, 20), (215, 80, 150), (170, 20, 60)], np.float32)
_PERSON_TROUSERS = np.array([(120, 20, 20), (150, 60, 30), (90, 20, 70)], np.float32)
_CAR_COLOURS = np.array([(30, 60, 170), (210, 175, 20), (20, 130, 170), (110, 40, 160)], np.float32)
_BIKE_COLOURS = np.array([(30, 160, 50), (110, 200, 40), (20, 120, 80)], np.float32)
_WALL_COLOURS = np.array([(150, 80, 60), (170, 165, 155), (195, 175, 135), (105, 100, 110)], np.float32)
_SKIN = np.array((225, 185, 155), np.float32)


@dataclass
class Scene:
    """One synthetic pair with every kind of target.

    Attributes:
        vis: ``(H, W, 3)`` uint8 visible image.
        ir: ``(H, W)`` uint8 thermal image.
        mask: ``(H, W)`` uint8 semantic labels, values index :data:`SYNTHETIC_CLASSES`.
        boxes: ``(class_id, x1, y1, x2, y2)`` per visible person/car/bike instance, pixel coordinates of its visible
            part, ``x2``/``y2`` exclusive.
        saliency: ``(H, W)`` uint8, 255 on warm objects (people, cars, bikes), else 0.
        condition: ``"day"``, ``"night"`` or ``"fog"``.
    """

    vis: np.ndarray
    ir: np.ndarray
    mask: np.ndarray
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    saliency: np.ndarray | None = None
    condition: str = "day"


class _Standing(NamedTuple):
    """An object's clipped region: slices ``sl``, pixel centres ``ys`` / ``xs``, the box corner ``x0`` / ``y0`` and
    the box coordinates ``u`` / ``v`` (0 at the left / top edge, 1 at the right / bottom)."""

    sl: tuple[slice, slice]
    ys: np.ndarray
    xs: np.ndarray
    x0: float
    y0: float
    u: np.ndarray
    v: np.ndarray


class _Canvas:
    """The layers painted while drawing: day colours, IR material, labels, instances and IR offsets."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.material = np.zeros((h, w), np.uint8)
        self.mask = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int16)
        self.ir_offset = np.zeros((h, w), np.float32)
        self.regions: dict[int, tuple[slice, slice, int]] = {}  # instance -> (rows, cols, class)

    def region(self, x0: float, y0: float, x1: float, y1: float):
        """Clipped integer region of a float box, with local pixel-centre coordinates; None if off-canvas."""
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), self.h)
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), self.w)
        if r1 <= r0 or c1 <= c0:
            return None
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
        ys, xs = np.broadcast_arrays(ys, xs)  # full (h, w) grids so every derived mask has the region's shape
        return (slice(r0, r1), slice(c0, c1)), ys, xs

    def standing(self, cx: float, yb: float, width: float, height: float) -> _Standing | None:
        """The region of an object box standing on (cx, yb) (its bottom centre), with box coordinates; None if
        off-canvas."""
        x0, y0 = cx - width / 2, yb - height
        reg = self.region(x0, y0, x0 + width, yb)
        if reg is None:
            return None
        sl, ys, xs = reg
        return _Standing(sl, ys, xs, x0, y0, (xs - x0) / width, (ys - y0) / height)

    def paint_object(self, sl, m: np.ndarray, colour: np.ndarray, material: np.ndarray, label: int, inst: int,
                     ir_offset: float | np.ndarray) -> None:
        """:meth:`paint` an object instance and record its region (its box in the annotations)."""
        self.paint(sl, m, colour, material, label, inst, ir_offset)
        self.regions[inst] = (sl[0], sl[1], label)

    def paint(self, sl, m: np.ndarray, colour: np.ndarray, material: np.ndarray | int, label: int = -1,
              inst: int = 0, ir_offset: float | np.ndarray = 0.0) -> None:
        """Write the pixels of local boolean mask ``m`` into every layer."""
        rgb = self.rgb[sl]
        rgb[m] = colour[m] if colour.ndim == 3 else colour
        mat = self.material[sl]
        mat[m] = material[m] if isinstance(material, np.ndarray) else material
        if label >= 0:
            self.mask[sl][m] = label
            self.inst[sl][m] = inst
            off = self.ir_offset[sl]
            off[m] = ir_offset[m] if isinstance(ir_offset, np.ndarray) else ir_offset


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean pixel noise of standard deviation ``std``; uniform, as it is ~5x cheaper to draw than Gaussian."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(std * 12**0.5)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Unit-variance-ish noise, bilinearly interpolated from a grid of ``cell``-pixel spacing."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    fy = np.arange(h, dtype=np.float32) / cell
    fx = np.arange(w, dtype=np.float32) / cell
    y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bot = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bot * wy


def _box_blur3(x: np.ndarray) -> np.ndarray:
    """3x3 mean filter with edge replication (thermal optics are blurrier than visible ones)."""
    p = np.pad(x, 1, mode="edge")
    h, w = x.shape
    return sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _segment_dist(ys: np.ndarray, xs: np.ndarray, p: tuple[float, float], q: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel centre to the segment p-q (points as (x, y) pixels)."""
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    t = np.clip(((xs - px) * dx + (ys - py) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return np.hypot(xs - (px + t * dx), ys - (py + t * dy))


def _draw_background(cv: _Canvas, rng: np.random.Generator) -> dict[str, float]:
    """Sky, pavement, buildings, road and lane marks; returns the road geometry used to place objects."""
    h, w = cv.h, cv.w
    hz = int(h * rng.uniform(0.36, 0.48))
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    # Sky: vertical gradient, lighter towards the horizon.
    t_sky = np.clip(ys / max(hz, 1), 0, 1)
    sky = np.array((90, 150, 225), np.float32) * (1 - t_sky[..., None]) + np.array((185, 210, 235), np.float32) * \
        t_sky[..., None]
    cv.rgb[:] = np.broadcast_to(sky, (h, w, 3))
    cv.material[:] = SKY
    # Pavement below the horizon.
    cv.rgb[hz:] = np.array((150, 140, 128), np.float32)
    cv.material[hz:] = PAVEMENT
    # Buildings standing on the horizon, left to right, with gaps of sky.
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = rng.uniform(0.08, 0.24) * w
        if rng.random() < 0.85:
            top = rng.uniform(0.05, 0.75) * hz
            reg = cv.region(x, top, x + bw, hz)
            if reg is not None:
                sl, by, bx = reg
                colour = _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))] * rng.uniform(0.85, 1.1)
                pitch_x, pitch_y = rng.uniform(7, 14), rng.uniform(9, 16)
                win = (((bx - x) % pitch_x) < 0.5 * pitch_x) & (((by - top) % pitch_y) < 0.5 * pitch_y) & \
                    (by - top > 3) & (hz - by > 4)
                rgb = np.empty(win.shape + (3,), np.float32)
                rgb[:] = colour
                rgb[win] = (60, 80, 110)
                cv.rgb[sl] = rgb
                cv.material[sl] = np.where(win, WINDOW, WALL)
                cv.mask[sl] = BUILDING
        x += bw
    # Road: a trapezoid from a vanishing point on the horizon; lane marks dashed with perspective spacing.
    vx, cb = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * w
    w0, w1 = rng.uniform(0.02, 0.05) * w, rng.uniform(0.32, 0.48) * w
    t = (ys[hz:] - hz) / max(h - hz, 1)  # rows below the horizon only
    centre, half = vx + (cb - vx) * t, w0 + (w1 - w0) * t
    road = np.abs(xs - centre) <= half
    depth = 1.0 / (t + 0.06)  # ~ distance along the road: equal steps give perspective-spaced dashes
    lane = road & (np.abs(xs - centre) <= np.maximum(0.6, 0.025 * half)) & ((depth * 1.5).astype(np.int64) % 2 == 0)
    colour = np.where(lane[..., None], np.float32((230, 228, 215)), np.float32((88, 88, 94)))
    cv.rgb[hz:] = np.where(road[..., None], colour, cv.rgb[hz:])
    cv.material[hz:] = np.where(lane, PAINT, np.where(road, ASPHALT, cv.material[hz:]))
    cv.mask[hz:] = np.where(road, ROAD, cv.mask[hz:])
    return {"hz": float(hz), "vx": vx, "cb": cb, "w0": w0, "w1": w1}


def _person(cv: _Canvas, rng: np.random.Generator, cx: float, yb: float, height: float, inst: int,
            lean: float = 0.0) -> None:
    obj = cv.standing(cx, yb, 0.4 * height, height)
    if obj is None:
        return
    v = obj.v
    u = obj.u - lean * (v - 1)  # riders lean forward
    head = ((u - 0.5) / 0.17) ** 2 + ((v - 0.09) / 0.085) ** 2 <= 1
    torso = (np.abs(u - 0.5) <= 0.3) & (v >= 0.17) & (v <= 0.57)
    stride = rng.uniform(0.0, 0.3)
    s = np.clip((v - 0.55) / 0.45, 0, 1)
    legs = (v > 0.55) & ((np.abs(u - (0.4 - stride * s)) <= 0.11) | (np.abs(u - (0.6 + stride * s)) <= 0.11))
    m = head | torso | legs
    rgb = np.empty(m.shape + (3,), np.float32)
    rgb[:] = _PERSON_TROUSERS[rng.integers(len(_PERSON_TROUSERS))]
    rgb[torso] = _PERSON_SHIRTS[rng.integers(len(_PERSON_SHIRTS))]
    rgb[head] = _SKIN
    material = np.where(head, SKIN, CLOTH).astype(np.uint8)
    offset = np.float32(rng.uniform(-12, 8)) - 8.0 * legs  # trousers insulate: legs a little cooler
    cv.paint_object(obj.sl, m, rgb, material, PERSON, inst, offset)


def _car(cv: _Canvas, rng: np.random.Generator, cx: float, yb: float, height: float, inst: int) -> None:
    side = rng.random() < 0.7
    width = height * (rng.uniform(2.0, 2.5) if side else rng.uniform(1.1, 1.3))
    obj = cv.standing(cx, yb, width, height)
    if obj is None:
        return
    x0, y0, ys, xs, u, v = obj.x0, obj.y0, obj.ys, obj.xs, obj.u, obj.v
    body = (v >= 0.42) & (v <= 0.86)
    if side:
        slope = 0.12 * np.clip((0.42 - v) / 0.32, 0, 1)
        cabin = (v >= 0.1) & (v < 0.42) & (u >= 0.18 + slope) & (u <= 0.8 - slope)
        glass = cabin & (v >= 0.16) & (np.abs(u - 0.49) > 0.015)
        r = 0.15 * height
        wheels = np.zeros_like(body)
        for wu in (0.2, 0.8):
            wheels |= np.hypot(xs - (x0 + wu * width), ys - (y0 + 0.84 * height)) <= r
        hot = body & ((u < 0.28) if rng.random() < 0.5 else (u > 0.72))  # engine at the front
    else:
        cabin = (v >= 0.1) & (v < 0.42) & (u >= 0.12) & (u <= 0.88)
        glass = cabin & (v >= 0.15) & (u >= 0.18) & (u <= 0.82)
        wheels = (v > 0.8) & ((u < 0.16) | (u > 0.84))
        hot = body & (v > 0.6) & (np.abs(u - 0.5) < 0.25)  # radiator / exhaust
    m = body | cabin | wheels
    rgb = np.empty(m.shape + (3,), np.float32)
    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.85, 1.1)
    rgb[:] = colour * (1.05 - 0.2 * v[..., None])  # top lit more than the sills
    rgb[glass] = (50, 60, 75)
    rgb[wheels] = (25, 25, 25)
    material = np.full(m.shape, CAR_BODY, np.uint8)
    material[hot] = ENGINE
    material[glass] = GLASS
    material[wheels] = TYRE
    cv.paint_object(obj.sl, m, rgb, material, CAR, inst, float(rng.uniform(-10, 10)))


def _bike(cv: _Canvas, rng: np.random.Generator, cx: float, yb: float, height: float, inst: int) -> None:
    width = 1.7 * height
    obj = cv.standing(cx, yb, width, height)
    if obj is None:
        return
    x0, y0, ys, xs = obj.x0, obj.y0, obj.ys, obj.xs
    r = 0.3 * height
    thick = max(0.9, 0.06 * height)

    def pt(u: float, v: float) -> tuple[float, float]:
        return x0 + u * width, y0 + v * height

    tyres = np.zeros(ys.shape, bool)
    for wu in (0.2, 0.8):
        d = np.hypot(xs - pt(wu, 0.68)[0], ys - pt(wu, 0.68)[1])
        tyres |= np.abs(d - r) <= thick
    frame = np.zeros_like(tyres)
    # rear hub, seat, pedals, head tube, front hub, handlebar
    for p, q in (((0.2, 0.68), (0.42, 0.3)), ((0.42, 0.3), (0.5, 0.68)), ((0.5, 0.68), (0.2, 0.68)),
                 ((0.42, 0.3), (0.72, 0.28)), ((0.5, 0.68), (0.72, 0.28)), ((0.72, 0.28), (0.8, 0.68)),
                 ((0.68, 0.1), (0.74, 0.3))):
        frame |= _segment_dist(ys, xs, pt(*p), pt(*q)) <= thick
    m = tyres | frame
    rgb = np.empty(m.shape + (3,), np.float32)
    rgb[:] = _BIKE_COLOURS[rng.integers(len(_BIKE_COLOURS))]
    rgb[tyres] = rgb[tyres] * 0.45
    material = np.where(tyres, TYRE, BIKE_FRAME).astype(np.uint8)
    cv.paint_object(obj.sl, m, rgb, material, BIKE, inst, float(rng.uniform(-8, 8)))


def _draw_objects(cv: _Canvas, rng: np.random.Generator, road: dict[str, float]) -> None:
    h, w, hz = cv.h, cv.w, road["hz"]

    def road_at(y: float) -> tuple[float, float]:
        t = (y - hz) / max(h - hz, 1)
        return road["vx"] + (road["cb"] - road["vx"]) * t, road["w0"] + (road["w1"] - road["w0"]) * t

    objects = []  # (bottom y, class, centre x, scale)
    kinds = [PERSON] * int(rng.integers(1, 5)) + [CAR] * int(rng.integers(1, 4)) + [BIKE] * int(rng.integers(1, 3))
    for cls in kinds:
        yb = hz + (h - hz) * rng.uniform(0.12, 1.0)
        s = (yb - hz) / (h - hz)  # perspective: size grows linearly towards the camera
        centre, half = road_at(yb)
        if cls == CAR:
            cx = centre + rng.uniform(-0.75, 0.75) * half
        elif cls == BIKE:
            cx = centre + rng.choice((-1, 1)) * rng.uniform(0.3, 1.1) * half
        else:
            cx = rng.uniform(0.02, 0.98) * w
        objects.append((yb, cls, cx, s))
    objects.sort(key=lambda o: o[0])  # far first: near objects occlude far ones
    inst = 0
    for yb, cls, cx, s in objects:
        inst += 1
        if cls == PERSON:
            _person(cv, rng, cx, yb, s * 0.5 * h, inst)
        elif cls == CAR:
            _car(cv, rng, cx, yb, s * 0.36 * h, inst)
        else:
            bh = s * 0.3 * h
            _bike(cv, rng, cx, yb, bh, inst)
            if rng.random() < 0.6:  # a rider: a separate person instance, sitting over the frame
                inst += 1
                _person(cv, rng, cx - 0.05 * bh, yb - 0.3 * bh, 1.45 * bh, inst, lean=0.15)


def _render_vis(cv: _Canvas, empty_rgb: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    h, w = cv.h, cv.w
    texture = _smooth_noise(rng, h, w, 6)[..., None] * 6.0 + _noise(rng, (h, w, 1), 3)
    if condition == "day":
        out = cv.rgb * rng.uniform(0.9, 1.1) + texture + _noise(rng, (h, w, 3), 3.0)
        return np.clip(out, 0, 255).astype(np.uint8)
    # Night and fog: the empty street, with only a faint ghost of the objects.
    base = empty_rgb * 0.96 + cv.rgb * 0.04 + texture
    if condition == "night":
        gain = rng.uniform(0.06, 0.1)
        out = base * gain * np.array((1.1, 1.0, 0.85), np.float32)  # sodium street-light tint
        for _ in range(int(rng.integers(1, 4))):  # lamp glare at random places, unrelated to the objects
            gx, gy = rng.uniform(0, w), rng.uniform(0.1, 0.6) * h
            rad, amp = rng.uniform(0.006, 0.025) * w, rng.uniform(120, 230)
            reg = cv.region(gx - 4 * rad, gy - 4 * rad, gx + 4 * rad, gy + 4 * rad)  # exp(-8) beyond: negligible
            if reg is not None:
                sl, ys, xs = reg
                out[sl] += (amp * np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * rad * rad)))[..., None]
        out = out + _noise(rng, (h, w, 3), 2.5)
    else:  # fog: Koschmieder's model with a low transmission
        tr, air = rng.uniform(0.1, 0.16), rng.uniform(185, 215)
        out = base * tr + air * (1 - tr) + _noise(rng, (h, w, 3), 2.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def _render_ir(cv: _Canvas, condition: str, rng: np.random.Generator) -> np.ndarray:
    lut = _IR_LUT["night" if condition == "night" else "day"]
    ir = lut[cv.material] + cv.ir_offset + _smooth_noise(rng, cv.h, cv.w, 16) * 5.0
    if condition == "fog":
        ir = ir.mean() + 0.85 * (ir - ir.mean())  # fog attenuates long-wave IR a little
    ir = _box_blur3(ir) + _noise(rng, (cv.h, cv.w), 2.5)
    return np.clip(ir, 0, 255).astype(np.uint8)


def _boxes(cv: _Canvas) -> list[tuple[int, int, int, int, int]]:
    out = []
    for inst, (rows, cols, cls) in cv.regions.items():
        vis = cv.inst[rows, cols] == inst
        if vis.sum() < _MIN_VISIBLE_PIXELS:
            continue
        r = np.flatnonzero(vis.any(1))
        c = np.flatnonzero(vis.any(0))
        out.append((cls, cols.start + int(c[0]), rows.start + int(r[0]), cols.start + int(c[-1]) + 1,
                    rows.start + int(r[-1]) + 1))
    return out


def make_scene(
    rng_or_seed: np.random.Generator | int | None,
    height: int = 256,
    width: int = 320,
    condition: str = "day",
) -> Scene:
    """Draw one synthetic street scene.

    Args:
        rng_or_seed: a numpy Generator (consumed) or an int seed; the same seed gives the same arrays.
        height: image height in pixels.
        width: image width in pixels.
        condition: ``"day"``, ``"night"`` or ``"fog"`` (see the module docstring).

    Returns:
        A :class:`Scene`; the layout (and so mask, boxes, saliency) depends only on the random stream, not on
        ``condition``.
    """
    if condition not in CONDITIONS:
        raise ConfigError(f"condition must be one of {CONDITIONS}, got {condition!r}.")
    if height < 16 or width < 16:
        raise ConfigError(f"Synthetic scenes need height and width >= 16, got {height}x{width}.")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    cv = _Canvas(int(height), int(width))
    road = _draw_background(cv, rng)
    empty_rgb = cv.rgb.copy()
    _draw_objects(cv, rng, road)
    vis = _render_vis(cv, empty_rgb, condition, rng)
    ir = _render_ir(cv, condition, rng)
    saliency = np.where(np.isin(cv.mask, OBJECT_CLASSES), 255, 0).astype(np.uint8)
    return Scene(vis=vis, ir=ir, mask=cv.mask, boxes=_boxes(cv), saliency=saliency, condition=condition)


def _split_key(split: str) -> int:
    return zlib.crc32(split.encode())  # stable across processes, unlike hash()


def synthetic_conditions(num_samples: int, seed: int, split: str, night_fraction: float,
                         fog_fraction: float) -> list[str]:
    """The condition of every item: exactly ``round(n * fraction)`` night and fog items, in a seeded order."""
    if not (0 <= night_fraction <= 1 and 0 <= fog_fraction <= 1 and night_fraction + fog_fraction <= 1):
        raise ConfigError(
            f"night_fraction ({night_fraction}) and fog_fraction ({fog_fraction}) must be in [0, 1] and sum to <= 1."
        )
    n_night, n_fog = round(num_samples * night_fraction), round(num_samples * fog_fraction)
    n_fog = min(n_fog, num_samples - n_night)
    conds = ["night"] * n_night + ["fog"] * n_fog + ["day"] * (num_samples - n_night - n_fog)
    order = np.random.default_rng([seed, _split_key(split), 0x5EED]).permutation(num_samples)
    return [conds[i] for i in order]


class SyntheticScenes:
    """The records and scenes of one synthetic split; scene ``i`` is generated from ``(seed, split, i)`` alone, so it
    is the same in every epoch, DataLoader worker and DDP rank. Every task's synthetic dataset reads from one.

    Args:
        num_samples: number of items.
        seed: base seed.
        height: image height.
        width: image width.
        night_fraction: share of night scenes (exact, rounded).
        fog_fraction: share of fog scenes; the rest are day scenes.
        split: names the random stream, so ``train`` and ``val`` with the same seed hold different scenes.
    """

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 320,
                 night_fraction: float = 0.5, fog_fraction: float = 0.0, split: str = "train") -> None:
        if num_samples < 0:
            raise ConfigError(f"num_samples must be >= 0, got {num_samples}.")
        self.seed, self.split, self.height, self.width = int(seed), split, int(height), int(width)
        conds = synthetic_conditions(num_samples, self.seed, split, night_fraction, fog_fraction)
        self.records = []
        for i, cond in enumerate(conds):
            name = f"{i:05d}{CONDITION_LETTERS[cond]}"
            uri = f"synthetic://{split}/seed{self.seed}/{name}"
            self.records.append(PairRecord(name, f"{uri}/vis", f"{uri}/ir", f"{uri}/label", cond))
        self._cached: tuple[int, Scene] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def scene(self, index: int) -> Scene:
        """The full :class:`Scene` of item ``index`` (mask, boxes and saliency included)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, _split_key(self.split), index])
        scene = make_scene(rng, self.height, self.width, self.records[index].condition)
        self._cached = (index, scene)  # the image and target reads of one item share one draw
        return scene


class SceneImages:
    """Mixin for a :class:`ivtune.data.pairs.PairedDataset` over :class:`SyntheticScenes` (``self.scenes``): the
    images come from the generator and nothing is on disk."""

    scenes: SyntheticScenes

    def files(self, index: int) -> list[tuple[str, str]]:
        return []

    def read_vis(self, index: int) -> np.ndarray:
        return self.scenes.scene(index).vis

    def read_ir(self, index: int) -> np.ndarray:
        return self.scenes.scene(index).ir


def write_synthetic_dataset(
    root: str | Path,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    height: int = 256,
    width: int = 320,
    night_fraction: float = 0.5,
    fog_fraction: float = 0.0,
) -> Path:
    """Write synthetic scenes as PNG files in the ``folders`` layout.

    Layout: ``{split}/vis/NAME.png`` (RGB), ``{split}/ir/NAME.png`` (grey), ``{split}/labels/NAME.png`` (palette
    PNG, index = class), plus ``{split}/saliency/NAME.png`` (0/255) and ``{split}/boxes/NAME.txt`` (one
    ``class_id x1 y1 x2 y2`` line per instance, pixels, x2/y2 exclusive) for the detection and SOD tasks;
    ``classes.txt`` (``index name`` lines) and ``synthetic.json`` (the generator arguments) at the root. NAME ends in
    ``D``/``N``/``F``. The scenes equal those of :class:`SyntheticScenes` with the same arguments.

    Args:
        root: output folder (created).
        splits: ``split -> number of pairs``; default ``{"train": 200, "val": 50}``.
        seed: base seed.
        height: image height.
        width: image width.
        night_fraction: share of night scenes per split.
        fog_fraction: share of fog scenes per split.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    splits = {"train": 200, "val": 50} if splits is None else dict(splits)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(SYNTHETIC_CLASSES)))
    flat_palette = [v for rgb in SYNTHETIC_PALETTE for v in rgb]
    for split, n in splits.items():
        ds = SyntheticScenes(n, seed, height, width, night_fraction, fog_fraction, split=split)
        dirs = {k: root / split / k for k in ("vis", "ir", "labels", "saliency", "boxes")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for i, rec in enumerate(ds.records):
            sc = ds.scene(i)
            Image.fromarray(sc.vis, "RGB").save(dirs["vis"] / f"{rec.name}.png")
            Image.fromarray(sc.ir, "L").save(dirs["ir"] / f"{rec.name}.png")
            label = Image.fromarray(sc.mask, "P")
            label.putpalette(flat_palette)
            label.save(dirs["labels"] / f"{rec.name}.png")
            Image.fromarray(sc.saliency, "L").save(dirs["saliency"] / f"{rec.name}.png")
            (dirs["boxes"] / f"{rec.name}.txt").write_text("".join(" ".join(map(str, b)) + "\n" for b in sc.boxes))
    meta = {"generator": "ivtune.data.scenes", "seed": seed, "height": height, "width": width,
            "night_fraction": night_fraction, "fog_fraction": fog_fraction, "splits": splits,
            "classes": list(SYNTHETIC_CLASSES)}
    (root / "synthetic.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return root
