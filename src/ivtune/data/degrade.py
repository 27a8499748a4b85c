"""Sensor faults: evaluation-time degradations of a VIS/IR pair and training-time modality dropout / misalignment.

Everything here works on the raw sample of a dataset's ``load_raw`` (numpy ``vis`` uint8 (H, W, 3), ``ir`` uint8
(H, W) or (H, W, 1), targets, ``meta``), after loading and before the transform pipeline, so geometry is in native
pixels and every method sees the same degraded input. Functions return a new sample dict; input arrays are never
written (arrays a fault does not touch are shared with the input, not copied). Targets (``mask``, saliency maps,
``boxes``) are never changed: they live in the visible frame, and only the IR image moves under ``shift`` and
``rotate``.

Missing-modality convention (one definition, used by ``ir:missing`` / ``vis:missing`` and by training-time
:func:`modality_dropout`): a missing image is the input that normalisation maps to 0, i.e. the per-modality
normalisation mean. Exactness comes from a flag, not from pixel values: :func:`drop_modality` fills the image with
the uint8 nearest to ``255 * mean`` (per channel for VIS; the channel average for IR, which is one grey channel
before it is replicated) and appends the modality to ``meta["missing"]``. After the pipeline's ``Normalize``, the
caller runs :func:`apply_missing_after_normalize`, which overwrites every flagged modality with exact zeros (+0.0).
The fill alone is off by up to ``0.5 / 255 / std`` after normalisation (0.0087 for ImageNet statistics), more for
an IR image replicated to 3 channels with per-channel means (one grey level cannot hit all three), and resizing or
photometric jitter in between would move it further; the flag makes "missing = 0 after normalisation" hold exactly
whatever runs in between. The border that ``shift`` / ``rotate`` uncover takes the same IR fill (not
flagged: only whole modalities are).

Degradations (``x``: input grey level in [0, 255] per pixel and channel, computed in float64; every output is
``clip(rint(y), 0, 255)`` as uint8, ``rint`` rounding half to even):

- ``ir:missing`` / ``vis:missing``: the image becomes the fill above and the modality is flagged in ``meta["missing"]``.
- ``vis:dark=G[,E]``: ``y = 255 * E * (x / 255) ** G``; gamma G > 0 (G > 1 darkens), exposure E in (0, 1], default 1.
- ``vis:fog=A[,L]``: atmospheric scattering ``y = x * t + 255 * L * (1 - t)`` with a uniform transmission
  ``t = 1 - A``; fog density A in (0, 1], airlight L in [0, 1], default 0.8.
- ``vis:glare[=S]``: bloom toward white on all channels, ``y = x + (255 - x) * g``, ``g = min(1, 2 exp(-d^2 / (2
  s^2)))``, ``s = S * min(H, W)``, S in (0, 1], default 0.15; ``d`` is the distance in pixels to the centre
  ``(cy, cx) = (rng.integers(0, H), rng.integers(0, W))``, drawn in that order. The core ``d <= s sqrt(2 ln 2)`` is 255.
- ``ir:noise=S``: ``y = x + S * z``, ``z = rng.standard_normal((H, W))``; sigma S > 0 in grey levels.
- ``ir:saturate[=T]``: hot-region saturation, ``y = 255`` where ``x > T``, else ``x``; integer T in [0, 254], default
  200.
- ``vis:blur=K`` / ``ir:blur=K``: box blur, the mean over the K x K window centred on the pixel, the image extended by
  edge replication; K odd, >= 3.
- ``shift=DX,DY``: the IR image translated by integer (DX, DY) pixels (+x right, +y down),
  ``y[r, c] = x[r - DY, c - DX]``, the IR fill where that falls outside the image.
- ``rotate=DEG``: the IR image rotated by DEG degrees in [-180, 180], counter-clockwise on screen, about the
  pixel-centre point ``(cx, cy) = ((W - 1) / 2, (H - 1) / 2)``: the output pixel ``(cx + u, cy + v)`` samples ``x``
  bilinearly at ``(cx + u cos - v sin, cy + u sin + v cos)``, or takes the IR fill where that point lies outside
  ``[0, W - 1] x [0, H - 1]``.

Canonical names (report row labels) write the parameters back with trailing defaults left out: ``vis:glare=0.15``
and ``vis:glare`` are both ``vis:glare``; ``vis:dark=2.0`` is ``vis:dark=2``.

Randomness: a degradation draws only from the ``rng`` it is given. :func:`sample_rng` derives one per sample from
(seed, ``meta["name"]``, degradation kind), so the draws do not depend on method, batch size, worker or dataset order,
and severities of one kind share their random numbers (``ir:noise=5`` and ``ir:noise=20`` scale the same ``z``).
:class:`DegradedTransform` wires this into an evaluation pipeline. See ``docs/METHOD.md`` (robustness evaluation).
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, InputShapeError

Sample = dict[str, Any]
MODALITIES = ("vis", "ir")

# The ImageNet mean of ivtune.data.transforms (not imported: this module stays free of torch). The 1-channel IR
# normaliser uses its channel average, as Normalize does.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
DEFAULT_FILL_MEANS: dict[str, tuple[float, ...]] = {"vis": _IMAGENET_MEAN, "ir": (sum(_IMAGENET_MEAN) / 3,)}

_SUITE = (
    ("ir:missing", "thermal camera dead or unplugged: how much does the model lean on IR?"),
    ("vis:missing", "visible camera dead, or total darkness: the IR-only fallback."),
    ("vis:dark=2.5", "night / under-exposure: gamma 2.5 takes mid-grey 128 to 46."),
    ("vis:fog=0.6", "dense fog: 60 % airlight, visible contrast cut to 40 %."),
    ("vis:glare", "headlight or low-sun glare saturating a blob of the visible image."),
    ("ir:noise=10", "uncooled microbolometer at high gain: temporal noise of sigma 10 grey levels."),
    ("ir:saturate", "hot engines / exhausts clipping the thermal range above grey level 200."),
    ("vis:blur=9", "defocus or motion blur of the visible camera (9 x 9 box)."),
    ("ir:blur=9", "soft, low-resolution thermal optics (9 x 9 box)."),
    ("shift=8,0", "horizontal misregistration (parallax / stale calibration) of 8 pixels."),
    ("shift=0,8", "vertical misregistration of 8 pixels."),
    ("rotate=3", "rotational calibration error of the camera rig, 3 degrees."),
)
DEGRADE_SUITE: tuple[str, ...] = tuple(spec for spec, _ in _SUITE)
"""The standard ``--degrade-suite`` specs, in report order (each is its canonical name)."""
SUITE_RATIONALE: dict[str, str] = dict(_SUITE)
"""One line per :data:`DEGRADE_SUITE` spec: the sensor fault it stands for."""


# --------------------------------------------------------------------------------------------------- the convention


def missing_value(modality: str, mean: float | Sequence[float]) -> tuple[int, ...]:
    """The uint8 fill of a missing image: ``rint(255 * mean)``, the grey level normalisation maps (nearly) to 0.

    Args:
        modality: ``"vis"`` or ``"ir"``.
        mean: the modality's normalisation mean in [0, 1] units (as in the run config): one value or one per
            channel. VIS gets one fill per channel (one value is used for all three); IR is one grey channel before
            it is replicated, so it gets the average of the means.

    Returns:
        ``(r, g, b)`` for VIS, ``(g,)`` for IR.

    Raises:
        ConfigError: unknown modality, or a mean outside [0, 1].
    """
    _check_modality(modality)
    vals = (float(mean),) if isinstance(mean, (int, float, np.floating, np.integer)) else tuple(float(v) for v in mean)
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise ConfigError(
            f"The {modality} normalisation mean must be one or more values in [0, 1], got {vals}. If these are 0-255 "
            "pixel statistics, divide them by 255."
        )
    if modality == "ir":
        return (int(np.rint(255.0 * sum(vals) / len(vals))),)
    if len(vals) not in (1, 3):
        raise ConfigError(f"The vis normalisation mean needs 1 or 3 values, got {len(vals)}: {vals}.")
    return tuple(int(np.rint(255.0 * v)) for v in (vals * 3 if len(vals) == 1 else vals))


def normalization_means(
    vis_mean: Sequence[float] = _IMAGENET_MEAN,
    ir_norm: str = "imagenet",
    ir_mean: float | Sequence[float] | None = None,
) -> dict[str, tuple[float, ...]]:
    """The ``fill_means`` of a run, from its normalisation settings (the rule of ``Normalize``).

    Args:
        vis_mean: VIS mean in [0, 1] units.
        ir_norm: ``"imagenet"`` (ImageNet channel average), ``"unit"`` (mean 0: the fill is black) or ``"meanstd"``.
        ir_mean: IR mean(s) in [0, 1] units, needed for ``"meanstd"``.

    Returns:
        ``{"vis": (r, g, b), "ir": (m, ...)}`` for :func:`missing_value`, :func:`parse_degradation` and friends.
    """
    if ir_norm == "imagenet":
        ir: tuple[float, ...] = DEFAULT_FILL_MEANS["ir"]
    elif ir_norm == "unit":
        ir = (0.0,)
    elif ir_norm == "meanstd":
        if ir_mean is None:
            raise ConfigError("ir_norm='meanstd' needs ir_mean (in [0, 1] units) to define the missing-IR fill.")
        ir = (float(ir_mean),) if isinstance(ir_mean, (int, float)) else tuple(float(v) for v in ir_mean)
    else:
        raise ConfigError(f"ir_norm must be one of ('imagenet', 'unit', 'meanstd'), got {ir_norm!r}.")
    return {"vis": tuple(float(v) for v in vis_mean), "ir": ir}


def drop_modality(sample: Sample, modality: str, fill: int | Sequence[int]) -> Sample:
    """Make ``modality`` missing: fill its image with ``fill`` and append it to ``meta["missing"]``.

    Args:
        sample: raw numpy sample.
        modality: ``"vis"`` or ``"ir"``.
        fill: uint8 grey level(s), normally :func:`missing_value` of the run's mean (1 or 3 values for VIS).

    Returns:
        A new sample; ``meta`` is copied, ``meta["missing"]`` lists the missing modalities in ``MODALITIES`` order.
    """
    _check_modality(modality)
    _check_sample(sample)
    values = _fill_levels(modality, fill)
    img = sample[modality]
    out = dict(sample)
    filled = np.empty_like(img)
    filled[...] = np.asarray(values, np.uint8) if modality == "vis" else values[0]
    out[modality] = filled
    meta = dict(sample.get("meta") or {})
    missing = set(meta.get("missing", ())) | {modality}
    meta["missing"] = [m for m in MODALITIES if m in missing]
    out["meta"] = meta
    return out


def apply_missing_after_normalize(sample: Sample) -> Sample:
    """Write exact zeros into every modality flagged in ``meta["missing"]``; run it after ``Normalize``.

    Works on one sample (``meta`` a dict; ``vis`` / ``ir`` torch tensors or numpy arrays) and on a batch (``meta`` a
    list of dicts, images stacked (B, C, H, W) or lists of per-sample tensors, as the detection collate gives).

    Returns:
        A new dict; flagged images are replaced by zero copies (same shape, dtype, device), the rest are shared.
    """
    meta = sample.get("meta")
    metas = meta if isinstance(meta, list) else [meta or {}]
    out = dict(sample)
    for modality in MODALITIES:
        rows = [i for i, m in enumerate(metas) if modality in (m or {}).get("missing", ())]
        if not rows or modality not in sample:
            continue
        x = sample[modality]
        if not isinstance(meta, list):
            out[modality] = _zeros_like(x)
        elif isinstance(x, (list, tuple)):
            out[modality] = [_zeros_like(v) if i in rows else v for i, v in enumerate(x)]
        else:
            y = x.clone() if hasattr(x, "clone") else np.array(x, copy=True)
            y[rows] = 0
            out[modality] = y
    return out


# ----------------------------------------------------------------------------------------------- training faults


def modality_dropout(sample: Sample, p: float, rng: np.random.Generator, fill_means: Mapping[str, Any]) -> Sample:
    """With probability ``p`` drop one modality (VIS or IR, equally likely), by :func:`drop_modality`.

    Two numbers are drawn on every call (``rng.random()``, then ``rng.integers(0, 2)``: 0 = VIS, 1 = IR), so the
    stream does not depend on ``p``. Pass a per-sample seeded generator (e.g. :func:`sample_rng`) for a
    reproducible, resumable run; after ``Normalize`` call :func:`apply_missing_after_normalize`.

    Args:
        sample: raw numpy sample.
        p: drop probability in [0, 1].
        rng: the sample's generator.
        fill_means: ``{"vis": mean(s), "ir": mean(s)}`` in [0, 1] units (:func:`normalization_means`).
    """
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"modality dropout probability must be in [0, 1], got {p!r}.")
    _check_sample(sample)
    fills = _fills(fill_means)
    u, which = rng.random(), int(rng.integers(0, 2))
    if u >= p:
        return dict(sample)
    modality = MODALITIES[which]
    return drop_modality(sample, modality, fills[modality])


def random_misalign(
    sample: Sample, max_px: int, rng: np.random.Generator, fill_means: Mapping[str, Any] | None = None
) -> Sample:
    """Shift the IR image by a random integer ``(dx, dy)`` in ``[-max_px, max_px]^2`` (as ``shift=DX,DY``).

    ``dx, dy = rng.integers(-max_px, max_px + 1, size=2)``; the uncovered border takes the IR fill of ``fill_means``
    (ImageNet statistics when None). Targets stay in the visible frame.
    """
    if isinstance(max_px, bool) or not isinstance(max_px, (int, np.integer)) or max_px < 0:
        raise ConfigError(f"random misalignment max_px must be an integer >= 0, got {max_px!r}.")
    fills = _fills(fill_means)
    dx, dy = (int(v) for v in rng.integers(-max_px, max_px + 1, size=2))
    _check_sample(sample)
    return dict(sample, ir=_on_ir(sample["ir"], lambda x: _shift(x, dx, dy, fills["ir"][0])))


def sample_rng(seed: int, key: str | int, tag: str = "") -> np.random.Generator:
    """A generator that depends only on ``(seed, key, tag)``: e.g. (eval seed, ``meta["name"]``, degradation kind)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}.")
    digest = hashlib.sha256(f"{key}\0{tag}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest[:16], "little")]))


# ------------------------------------------------------------------------------------------------- degradations


@dataclass(frozen=True)
class _Param:
    name: str
    integer: bool
    default: float | int | None  # None: required
    valid: Callable[[float], bool]
    rule: str  # completes "{name} must be ..."


@dataclass(frozen=True)
class _Kind:
    key: str
    params: tuple[_Param, ...]
    meaning: str
    apply: Callable[[Sample, tuple, np.random.Generator, dict[str, tuple[int, ...]]], Sample]

    @property
    def form(self) -> str:
        """``vis:dark=G[,E]``: required parameters plain, optional ones in brackets."""
        req = [p.name for p in self.params if p.default is None]
        opt = [p.name for p in self.params if p.default is not None]
        if not req and not opt:
            return self.key
        if not req:
            return f"{self.key}[={','.join(opt)}]"
        return f"{self.key}={','.join(req)}" + "".join(f"[,{n}]" for n in opt)


def _positive(v: float) -> bool:
    return v > 0


def _unit_open(v: float) -> bool:  # (0, 1]
    return 0 < v <= 1


def _odd_kernel(v: float) -> bool:
    return v >= 3 and v % 2 == 1


def _apply_missing(modality: str):
    def apply(s: Sample, params: tuple, rng: np.random.Generator, fills: dict[str, tuple[int, ...]]) -> Sample:
        return drop_modality(s, modality, fills[modality])

    return apply


def _apply_dark(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    gamma, exposure = params
    x = s["vis"].astype(np.float64)
    return dict(s, vis=_to_uint8(255.0 * exposure * (x / 255.0) ** gamma))


def _apply_fog(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    density, airlight = params
    t = 1.0 - density
    x = s["vis"].astype(np.float64)
    return dict(s, vis=_to_uint8(x * t + 255.0 * airlight * (1.0 - t)))


def _apply_glare(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    (size,) = params
    h, w = s["vis"].shape[:2]
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    sigma = size * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gain = np.minimum(1.0, 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma**2)))[..., None]
    x = s["vis"].astype(np.float64)
    return dict(s, vis=_to_uint8(x + (255.0 - x) * gain))


def _apply_noise(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    (sigma,) = params

    def noisy(x: np.ndarray) -> np.ndarray:
        return _to_uint8(x.astype(np.float64) + sigma * rng.standard_normal(x.shape))

    return dict(s, ir=_on_ir(s["ir"], noisy))


def _apply_saturate(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    (threshold,) = params
    ir = s["ir"]
    return dict(s, ir=np.where(ir > threshold, np.uint8(255), ir).astype(np.uint8))


def _apply_blur(modality: str):
    def apply(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
        (k,) = params
        x = s[modality]
        if modality == "vis":
            return dict(s, vis=np.stack([_box_blur(x[..., c], k) for c in range(x.shape[2])], axis=-1))
        return dict(s, ir=_on_ir(x, lambda a: _box_blur(a, k)))

    return apply


def _apply_shift(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    dx, dy = params
    return dict(s, ir=_on_ir(s["ir"], lambda x: _shift(x, dx, dy, fills["ir"][0])))


def _apply_rotate(s: Sample, params: tuple, rng: np.random.Generator, fills: dict) -> Sample:
    (deg,) = params
    return dict(s, ir=_on_ir(s["ir"], lambda x: _rotate(x, deg, fills["ir"][0])))


_KINDS: dict[str, _Kind] = {k.key: k for k in (
    _Kind("ir:missing", (), "IR image replaced by the missing-modality fill", _apply_missing("ir")),
    _Kind("vis:missing", (), "VIS image replaced by the missing-modality fill", _apply_missing("vis")),
    _Kind("vis:dark", (_Param("G", False, None, _positive, "> 0"),
                       _Param("E", False, 1.0, _unit_open, "in (0, 1]")),
          "255*E*(x/255)**G, gamma G > 1 darkens, exposure E", _apply_dark),
    _Kind("vis:fog", (_Param("A", False, None, _unit_open, "in (0, 1]"),
                      _Param("L", False, 0.8, lambda v: 0 <= v <= 1, "in [0, 1]")),
          "x*(1-A) + 255*L*A, fog density A, airlight L", _apply_fog),
    _Kind("vis:glare", (_Param("S", False, 0.15, _unit_open, "in (0, 1]"),),
          "saturating bloom of width S*min(H, W) at a seeded position", _apply_glare),
    _Kind("ir:noise", (_Param("S", False, None, _positive, "> 0"),), "Gaussian noise, sigma S grey levels",
          _apply_noise),
    _Kind("ir:saturate", (_Param("T", True, 200, lambda v: 0 <= v <= 254, "an integer in [0, 254]"),),
          "grey levels above T become 255", _apply_saturate),
    _Kind("vis:blur", (_Param("K", True, None, _odd_kernel, "an odd integer >= 3"),), "K x K box blur",
          _apply_blur("vis")),
    _Kind("ir:blur", (_Param("K", True, None, _odd_kernel, "an odd integer >= 3"),), "K x K box blur",
          _apply_blur("ir")),
    _Kind("shift", (_Param("DX", True, None, lambda v: True, "an integer"),
                    _Param("DY", True, None, lambda v: True, "an integer")),
          "IR moved by DX pixels right, DY down", _apply_shift),
    _Kind("rotate", (_Param("DEG", False, None, lambda v: -180 <= v <= 180, "in [-180, 180]"),),
          "IR rotated DEG degrees counter-clockwise about the centre", _apply_rotate),
)}


def valid_specs() -> str:
    """Every spec form with its meaning, one per line (for ``--help`` and error messages)."""
    return "\n".join(f"  {k.form:<22} {k.meaning}" for k in _KINDS.values())


def _valid_forms() -> str:
    return ", ".join(k.form for k in _KINDS.values())


@dataclass(frozen=True)
class Degradation:
    """One sensor fault; build it with :func:`parse_degradation`.

    Attributes:
        key: the kind, e.g. ``"vis:dark"``.
        params: every parameter value, defaults filled in.
        vis_fill: uint8 VIS missing-modality fill (r, g, b).
        ir_fill: uint8 IR missing-modality fill, also the border of ``shift`` / ``rotate``.
    """

    key: str
    params: tuple[float | int, ...] = ()
    vis_fill: tuple[int, int, int] = (124, 116, 104)
    ir_fill: int = 114

    @property
    def name(self) -> str:
        """Canonical spec, the report row label: parameters written back, trailing defaults left out."""
        values = list(self.params)
        defaults = [p.default for p in _KINDS[self.key].params]
        while values and values[-1] == defaults[len(values) - 1]:  # required parameters have default None
            values.pop()
        return self.key + ("=" + ",".join(_fmt(v) for v in values) if values else "")

    @property
    def random(self) -> bool:
        """True if the result depends on the generator."""
        return self.key in ("vis:glare", "ir:noise")

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        """Degrade a raw numpy sample; ``rng`` is required by the random kinds (:attr:`random`)."""
        _check_sample(sample)
        if rng is None:
            if self.random:
                raise ConfigError(f"Degradation {self.name!r} is random: pass a numpy Generator (see sample_rng).")
            rng = np.random.default_rng(0)  # never drawn from
        fills = {"vis": tuple(self.vis_fill), "ir": (int(self.ir_fill),)}
        return _KINDS[self.key].apply(sample, self.params, rng, fills)

    def __repr__(self) -> str:
        return f"Degradation({self.name!r})"


def parse_degradation(spec: str, fill_means: Mapping[str, Any] | None = None) -> Degradation:
    """Parse a ``--degrade`` spec (forms in the module docstring; names are case-insensitive).

    Args:
        spec: e.g. ``"ir:noise=10"``, ``"shift=8,0"``, ``"vis:glare"``.
        fill_means: ``{"vis": mean(s), "ir": mean(s)}`` in [0, 1] units, the run's normalisation means
            (:func:`normalization_means`); they define the missing-modality fill. None: ImageNet statistics.

    Returns:
        A :class:`Degradation`.

    Raises:
        ConfigError: unknown name (with a suggestion) or bad parameters; the message lists the valid specs.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"Empty degradation spec {spec!r}. Valid specs: {_valid_forms()}.")
    key, eq, arg = spec.strip().partition("=")
    key = key.strip().lower()
    kind = _KINDS.get(key)
    if kind is None:
        close = difflib.get_close_matches(key, list(_KINDS), n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(_KINDS[c].form) for c in close)}?" if close else ""
        raise ConfigError(f"Unknown degradation {spec!r}.{hint} Valid specs: {_valid_forms()}.")

    def bad(why: str) -> ConfigError:
        return ConfigError(f"Degradation {spec!r}: {why}. Form: {kind.form} ({kind.meaning}). "
                           f"Valid specs: {_valid_forms()}.")

    parts = [a.strip() for a in arg.split(",")] if eq else []
    n_req = sum(p.default is None for p in kind.params)
    if not kind.params and eq:
        raise bad("takes no parameter")
    if not n_req <= len(parts) <= len(kind.params):
        want = str(n_req) if n_req == len(kind.params) else f"{n_req} to {len(kind.params)}"
        raise bad(f"needs {want} parameter(s), got {len(parts)}")
    values: list[float | int] = []
    for p, text in zip(kind.params, parts + [None] * (len(kind.params) - len(parts)), strict=True):
        if text is None:
            values.append(p.default)
            continue
        try:
            v: float | int = int(text) if p.integer else float(text)
        except ValueError:
            raise bad(f"{p.name} must be {'an integer' if p.integer else 'a number'}, got {text!r}") from None
        if not math.isfinite(v) or not p.valid(v):
            raise bad(f"{p.name} must be {p.rule}, got {text}")
        values.append(v)
    fills = _fills(fill_means)
    return Degradation(key, tuple(values), vis_fill=tuple(fills["vis"]), ir_fill=fills["ir"][0])


def degradation_suite(fill_means: Mapping[str, Any] | None = None) -> list[Degradation]:
    """:data:`DEGRADE_SUITE`, parsed."""
    return [parse_degradation(s, fill_means) for s in DEGRADE_SUITE]


class DegradedTransform:
    """Evaluation wrapper: degrade the raw sample, run ``transform``, then zero the missing modalities exactly.

    Use it in place of the evaluation dataset's transform (the dataset calls it with the raw sample from
    ``load_raw``). The generator of each sample is ``sample_rng(seed, meta["name"], degradation.key)``, so every
    method, batch size and worker count sees the same degraded images.

    Args:
        transform: the evaluation pipeline ``(raw_sample, rng=None) -> tensor sample`` (ends with ``Normalize``).
        degradation: from :func:`parse_degradation`.
        seed: the evaluation seed.
    """

    def __init__(self, transform: Callable[..., Sample], degradation: Degradation, seed: int = 0):
        self.transform, self.degradation, self.seed = transform, degradation, seed
        sample_rng(seed, "")  # validate the seed now, not at the first sample

    def __call__(self, sample: Sample, rng: Any = None) -> Sample:
        name = (sample.get("meta") or {}).get("name")
        if name is None:
            raise ConfigError("DegradedTransform needs meta['name'] in each raw sample to seed its degradation.")
        degraded = self.degradation(sample, sample_rng(self.seed, name, self.degradation.key))
        out = self.transform(degraded) if rng is None else self.transform(degraded, rng)
        return apply_missing_after_normalize(out)

    def __repr__(self) -> str:
        return f"DegradedTransform({self.degradation.name!r}, seed={self.seed}, transform={self.transform!r})"


# ------------------------------------------------------------------------------------------------------ helpers


def _fmt(v: float | int) -> str:
    if isinstance(v, (int, np.integer)) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {MODALITIES}, got {modality!r}.")


def _check_sample(sample: Sample) -> None:
    for key, shapes in (("vis", "(H, W, 3)"), ("ir", "(H, W) or (H, W, 1)")):
        x = sample.get(key)
        if not isinstance(x, np.ndarray):
            raise InputShapeError(
                f"Degradations take the raw sample (numpy {key} uint8 {shapes}), got {type(x).__name__} for {key!r}. "
                "Apply them after loading and before the transform pipeline."
            )
        ok = x.ndim == 3 and x.shape[2] == 3 if key == "vis" else x.ndim == 2 or (x.ndim == 3 and x.shape[2] == 1)
        if x.dtype != np.uint8 or not ok:
            raise InputShapeError(f"{key} must be uint8 {shapes}, got {x.dtype} {x.shape}.")


def _fill_levels(modality: str, fill: int | Sequence[int]) -> tuple[int, ...]:
    vals = (fill,) if isinstance(fill, (int, np.integer)) else tuple(fill)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 255 for v in vals) or \
            len(vals) not in ((1, 3) if modality == "vis" else (1,)):
        want = "1 or 3 integers" if modality == "vis" else "1 integer"
        raise ConfigError(f"The {modality} fill must be {want} in [0, 255] (see missing_value), got {fill!r}.")
    return tuple(int(v) for v in vals)


def _fills(fill_means: Mapping[str, Any] | None) -> dict[str, tuple[int, ...]]:
    means = DEFAULT_FILL_MEANS if fill_means is None else fill_means
    missing = [m for m in MODALITIES if m not in means]
    if missing:
        raise ConfigError(f"fill_means needs the keys {MODALITIES} (normalisation means), lacks {missing}.")
    return {m: missing_value(m, means[m]) for m in MODALITIES}


def _to_uint8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _zeros_like(x: Any) -> Any:
    return x.new_zeros(x.shape) if hasattr(x, "new_zeros") else np.zeros_like(x)


def _on_ir(ir: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run ``fn`` on the (H, W) grey image; an (H, W, 1) input keeps its shape."""
    return fn(ir[..., 0]).reshape(ir.shape) if ir.ndim == 3 else fn(ir)


def _box_blur(x: np.ndarray, k: int) -> np.ndarray:
    r = k // 2
    p = np.pad(x.astype(np.int64), r, mode="edge")
    # integer window sums (exact) from cumulative sums along each axis
    c = np.cumsum(np.pad(p, ((1, 0), (0, 0))), axis=0)
    rows = c[k:] - c[:-k]
    c = np.cumsum(np.pad(rows, ((0, 0), (1, 0))), axis=1)
    sums = c[:, k:] - c[:, :-k]
    return _to_uint8(sums / float(k * k))


def _shift(x: np.ndarray, dx: int, dy: int, fill: int) -> np.ndarray:
    h, w = x.shape
    out = np.full_like(x, fill)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def _rotate(x: np.ndarray, deg: float, fill: int) -> np.ndarray:
    h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    th = math.radians(deg)
    cos, sin = math.cos(th), math.sin(th)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = u - cx, v - cy
    sx, sy = cx + u * cos - v * sin, cy + u * sin + v * cos
    eps = 1e-9  # sources within rounding error of the image edge count as inside
    inside = (sx >= -eps) & (sx <= w - 1 + eps) & (sy >= -eps) & (sy <= h - 1 + eps)
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    a = x.astype(np.float64)
    y = (1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1]) + fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1])
    return np.where(inside, _to_uint8(y), np.uint8(fill)).astype(np.uint8)
