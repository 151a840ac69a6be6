"""The prompt schema shared by every backend.

Coordinate frame: all geometric prompts are in **original-image pixels**, with
``x`` the column and ``y`` the row (the convention of segment-anything's
``SamPredictor``). A point at ``(x, y)`` lies inside an image of height ``H``
and width ``W`` when ``0 <= x < W`` and ``0 <= y < H``; a box
``(x0, y0, x1, y1)`` lies inside it when ``0 <= x0 < x1 <= W`` and
``0 <= y0 < y1 <= H``. Exemplar boxes (:class:`Exemplars`) follow the box rule.

Kinds: *where* (``points``, ``box``, ``mask``: one object), *what* (``text``,
``reference``: a reference image and mask from another image, ``exemplars``:
example boxes on the target image; a concept backend answers these with every
matching instance).

Each prompt part is a frozen dataclass. Array fields are copied on construction
and made read-only, so a prompt cannot change after it was validated; copies
made by ``pickle`` or :func:`copy.deepcopy` (a prompt sent to a Dask worker)
are read-only too. Parts
check what they can check alone (NaN, an inverted box, empty text, an empty
reference mask) when built; :meth:`Prompt.validate_for` checks what needs the
target image's size (points or a box outside the image, a mask of another
shape). Both raise :class:`~segprompt.errors.PromptError` naming the field and
the offending value.

Degenerate prompts, which no backend can answer with a meaningful mask, are
refused the same way for every backend (rather than answered with an empty
mask and a confident score): a box or exemplar box less than
:data:`MIN_BOX_SIDE` pixel wide or high, a binary mask prompt with no
foreground pixel, and exclude points with nothing else saying where the object
is (no include point, box, mask, text, reference or exemplar).
"""

from __future__ import annotations

import base64
import io as _io
import json
import zlib
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Sequence

import numpy as np

from .errors import PromptError

PromptKind = Literal["points", "box", "mask", "text", "reference", "exemplars"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("points", "box", "mask", "text", "reference", "exemplars")

#: Side of SAM's low-resolution mask logits (SAM, SAM-HQ, SAM 2.1, EdgeTAM: 4 x the 64 x 64 feature grid).
LOW_RES_SIDE = 256
#: The smallest width and height of a box prompt, in pixels: a smaller box covers no pixel's full width.
MIN_BOX_SIDE = 1.0
#: Every low-resolution logits side a SAM-family model produces: SAM's 256 and SAM 3's tracker's 288
#: (4 x its 72 x 72 feature grid). Which one a backend takes is its own check.
LOW_RES_SIDES: tuple[int, ...] = (LOW_RES_SIDE, 288)


def _frozen_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name}: cannot convert {value!r:.80} to an array of {np.dtype(dtype).name}") from exc
    array.setflags(write=False)
    return array


class _ReadOnlyArrays:
    """Keeps a frozen part's arrays read-only through ``pickle`` and :func:`copy.deepcopy`.

    Both rebuild an object from its ``__dict__`` without ``__post_init__``, and
    NumPy unpickles (and deep-copies) arrays writeable; the arrays restored
    here are the copy's own, so they are frozen again.
    """

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """``{"npy_zlib_base64": ...}``: ``array`` as a zlib-compressed ``.npy`` in base64, for JSON files (dtype and shape kept)."""
    buffer = _io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return {"npy_zlib_base64": base64.b64encode(zlib.compress(buffer.getvalue(), 6)).decode("ascii")}


def decode_array(blob: Any, name: str) -> np.ndarray:
    """The array :func:`encode_array` stored; ``name`` (the JSON field) is named in the error.

    Raises:
        PromptError: the blob is not a valid encoded array.
    """
    try:
        raw = zlib.decompress(base64.b64decode(blob["npy_zlib_base64"]))
        return np.load(_io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # any corruption of the blob is the same user-facing problem
        raise PromptError(f"{name}: stored array is not a valid encoded array ({exc})") from exc


@dataclass(frozen=True, eq=False)
class Points(_ReadOnlyArrays):
    """Click prompts.

    Attributes:
        xy: ``(N, 2)`` float array of ``(x, y)`` = ``(column, row)`` positions in
            original-image pixels.
        labels: ``(N,)`` int array, ``1`` = include (foreground), ``0`` = exclude
            (background).
    """

    xy: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        xy = _frozen_array(self.xy, np.float64, "points.xy")
        if xy.size == 0:
            xy = xy.reshape(0, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise PromptError(f"points.xy: expected shape (N, 2), got {xy.shape}")
        if xy.shape[0] == 0:
            raise PromptError("points.xy: at least one point is required")
        if not np.isfinite(xy).all():
            bad = xy[~np.isfinite(xy).all(axis=1)][0]
            raise PromptError(f"points.xy: non-finite coordinate {tuple(bad.tolist())}")
        labels = _frozen_array(self.labels, np.float64, "points.labels")
        if labels.shape != (xy.shape[0],):
            raise PromptError(f"points.labels: expected shape ({xy.shape[0]},), got {labels.shape}")
        bad_labels = labels[(labels != 0) & (labels != 1)]
        if bad_labels.size:
            raise PromptError(f"points.labels: label must be 1 (include) or 0 (exclude), got {bad_labels[0]!r}")
        labels = labels.astype(np.int64)
        labels.setflags(write=False)
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "labels", labels)

    @classmethod
    def from_lists(
        cls,
        include: Sequence[Sequence[float]] = (),
        exclude: Sequence[Sequence[float]] = (),
    ) -> "Points":
        """Build from lists of ``(x, y)`` include and exclude positions."""
        xy = [tuple(p) for p in include] + [tuple(p) for p in exclude]
        labels = [1] * len(include) + [0] * len(exclude)
        return cls(np.array(xy, dtype=np.float64).reshape(-1, 2), np.array(labels))

    @property
    def include(self) -> np.ndarray:
        """``(n, 2)`` include positions, ``(x, y)``."""
        return self.xy[self.labels == 1]

    @property
    def exclude(self) -> np.ndarray:
        """``(n, 2)`` exclude positions, ``(x, y)``."""
        return self.xy[self.labels == 0]

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Points) and np.array_equal(self.xy, other.xy) and np.array_equal(self.labels, other.labels)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"xy": self.xy.tolist(), "labels": self.labels.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Points":
        return cls(_frozen_array(data["xy"], np.float64, "points.xy").reshape(-1, 2), data["labels"])


def _check_box_size(name: str, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise PromptError(
            f"{name}: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is {x1 - x0:g} x {y1 - y0:g} pixels; "
            f"a box must be at least {MIN_BOX_SIDE:g} pixel wide and high"
        )


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``(x0, y0, x1, y1)`` in original-image pixels (XYXY)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise PromptError(f"box.{f.name}: not a number: {value!r}") from exc
            if not np.isfinite(number):
                raise PromptError(f"box.{f.name}: non-finite value {number}")
            object.__setattr__(self, f.name, number)
        if self.x1 <= self.x0:
            raise PromptError(f"box: inverted or empty box, x1={self.x1} <= x0={self.x0}")
        if self.y1 <= self.y0:
            raise PromptError(f"box: inverted or empty box, y1={self.y1} <= y0={self.y0}")
        _check_box_size("box", (self.x0, self.y0, self.x1, self.y1))

    def as_array(self) -> np.ndarray:
        """``(4,)`` float array ``[x0, y0, x1, y1]``."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> "Box":
        """Tight box around the ``True`` pixels of a ``(H, W)`` mask (``x1``/``y1`` exclusive)."""
        rows, cols = np.nonzero(np.asarray(mask))
        if rows.size == 0:
            raise PromptError("box: cannot build a box from an empty mask")
        return cls(float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))

    def to_dict(self) -> dict[str, Any]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Box":
        return cls(data["x0"], data["y0"], data["x1"], data["y1"])


@dataclass(frozen=True, eq=False)
class MaskPrompt(_ReadOnlyArrays):
    """A dense prompt: a previous mask to refine.

    Attributes:
        data: for ``kind="binary"`` a ``(H, W)`` bool mask in original-image
            pixels; for ``kind="logits"`` an ``(S, S)`` float array of SAM-family
            low-resolution logits (the ``low_res_logits`` of a previous
            :class:`~segprompt.backends.base.Prediction`), ``S`` one of
            :data:`LOW_RES_SIDES` (256; 288 for SAM 3's tracker). The logits only
            mean something to the model family that made them.
        kind: ``"binary"`` or ``"logits"``.
    """

    data: np.ndarray
    kind: Literal["binary", "logits"] = "binary"

    def __post_init__(self) -> None:
        if self.kind not in ("binary", "logits"):
            raise PromptError(f"mask.kind: must be 'binary' or 'logits', got {self.kind!r}")
        if self.kind == "binary":
            data = np.asarray(self.data)
            if data.dtype != bool:
                values = np.unique(data)
                if not np.isin(values, (0, 1, 255)).all():
                    raise PromptError(
                        f"mask.data: a binary mask must hold only 0/1 (or 0/255) values, found {values[:5].tolist()}"
                    )
            data = _frozen_array(data != 0, bool, "mask.data")
        else:
            data = _frozen_array(self.data, np.float32, "mask.data")
            if data.ndim == 3 and data.shape[0] == 1:
                data = data[0]
            if data.ndim != 2 or data.shape[0] != data.shape[1] or data.shape[0] not in LOW_RES_SIDES:
                shapes = " or ".join(f"({side}, {side})" for side in LOW_RES_SIDES)
                raise PromptError(f"mask.data: logits must have shape {shapes}, got {data.shape}")
            if not np.isfinite(data).all():
                raise PromptError("mask.data: logits contain NaN or infinite values")
        if data.ndim != 2:
            raise PromptError(f"mask.data: expected a 2-D (H, W) mask, got shape {data.shape}")
        object.__setattr__(self, "data", data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskPrompt) and self.kind == other.kind and np.array_equal(self.data, other.data)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": encode_array(self.data)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MaskPrompt":
        return cls(decode_array(data["data"], "mask.data"), data.get("kind", "binary"))


@dataclass(frozen=True)
class Text:
    """A text phrase naming what to segment, e.g. ``"polyp"``."""

    phrase: str

    def __post_init__(self) -> None:
        if not isinstance(self.phrase, str):
            raise PromptError(f"text.phrase: expected a string, got {type(self.phrase).__name__}")
        phrase = " ".join(self.phrase.split())
        if not phrase:
            raise PromptError(f"text.phrase: empty text {self.phrase!r}")
        object.__setattr__(self, "phrase", phrase)

    def to_dict(self) -> dict[str, Any]:
        return {"phrase": self.phrase}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Text":
        return cls(data["phrase"])


@dataclass(frozen=True, eq=False)
class VisualReference(_ReadOnlyArrays):
    """Show-don't-tell prompt: a reference image and the mask of the target in it.

    Attributes:
        image: ``(h, w, 3)`` uint8 RGB reference image (any array
            :func:`segprompt.io.to_rgb_uint8` accepts is converted).
        mask: ``(h, w)`` bool mask of the target in the reference image; must
            not be empty.
    """

    image: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        from .io import to_rgb_uint8  # io imports nothing from here; deferred to keep import order free
        from .errors import ImageError

        try:
            image = to_rgb_uint8(np.asarray(self.image))
        except ImageError as exc:
            raise PromptError(f"reference.image: {exc}") from exc
        image.setflags(write=False)
        mask = np.asarray(self.mask)
        if mask.ndim == 3 and mask.shape[2] in (1, 3, 4):
            mask = mask[..., 0]
        mask = _frozen_array(mask != 0, bool, "reference.mask")
        if mask.shape != image.shape[:2]:
            raise PromptError(
                f"reference.mask: shape {mask.shape} does not match reference.image shape {image.shape[:2]}"
            )
        if not mask.any():
            raise PromptError("reference.mask: the reference mask is empty (no foreground pixel)")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "mask", mask)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VisualReference)
            and np.array_equal(self.image, other.image)
            and np.array_equal(self.mask, other.mask)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"image": encode_array(self.image), "mask": encode_array(self.mask)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VisualReference":
        return cls(decode_array(data["image"], "reference.image"), decode_array(data["mask"], "reference.mask"))


@dataclass(frozen=True, eq=False)
class Exemplars(_ReadOnlyArrays):
    """Example boxes on the *target* image: "objects like these" (SAM 3's visual exemplars).

    Each box marks one instance of the concept (label ``1``, positive) or
    something that must not be matched (label ``0``, negative). A concept
    backend returns every instance in the image that matches the positives and
    not the negatives; unlike :class:`Box`, an exemplar does not say which
    object to segment.

    Attributes:
        boxes: ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` boxes in original-image
            pixels (XYXY, ``x1``/``y1`` exclusive like :class:`Box`).
        labels: ``(N,)`` int64, ``1`` = positive, ``0`` = negative.
    """

    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = _frozen_array(self.boxes, np.float64, "exemplars.boxes")
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise PromptError(f"exemplars.boxes: expected shape (N, 4), got {boxes.shape}")
        if boxes.shape[0] == 0:
            raise PromptError("exemplars.boxes: at least one box is required")
        for index, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            if not np.isfinite([x0, y0, x1, y1]).all():
                raise PromptError(f"exemplars.boxes[{index}]: non-finite value in {(x0, y0, x1, y1)}")
            if x1 <= x0 or y1 <= y0:
                raise PromptError(
                    f"exemplars.boxes[{index}]: inverted or empty box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
                )
            _check_box_size(f"exemplars.boxes[{index}]", (x0, y0, x1, y1))
        labels = _frozen_array(self.labels, np.float64, "exemplars.labels")
        if labels.shape != (boxes.shape[0],):
            raise PromptError(f"exemplars.labels: expected shape ({boxes.shape[0]},), got {labels.shape}")
        bad = labels[(labels != 0) & (labels != 1)]
        if bad.size:
            raise PromptError(f"exemplars.labels: label must be 1 (positive) or 0 (negative), got {bad[0]!r}")
        labels = labels.astype(np.int64)
        labels.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    @classmethod
    def from_boxes(cls, positive: Sequence[Box] = (), negative: Sequence[Box] = ()) -> "Exemplars":
        """Build from positive and negative :class:`Box` objects."""
        boxes = [box.as_array() for box in positive] + [box.as_array() for box in negative]
        labels = [1] * len(positive) + [0] * len(negative)
        return cls(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels))

    @property
    def positive(self) -> np.ndarray:
        """``(n, 4)`` positive boxes."""
        return self.boxes[self.labels == 1]

    @property
    def negative(self) -> np.ndarray:
        """``(n, 4)`` negative boxes."""
        return self.boxes[self.labels == 0]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Exemplars)
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.labels, other.labels)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"boxes": self.boxes.tolist(), "labels": self.labels.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Exemplars":
        return cls(_frozen_array(data["boxes"], np.float64, "exemplars.boxes").reshape(-1, 4), data["labels"])


_PART_TYPES: dict[str, type] = {
    "points": Points,
    "box": Box,
    "mask": MaskPrompt,
    "text": Text,
    "reference": VisualReference,
    "exemplars": Exemplars,
}


@dataclass(frozen=True)
class Prompt:
    """Any combination of prompt parts for one object (or one class or concept).

    A backend answers the parts it accepts (see
    :attr:`segprompt.backends.base.Segmenter.accepts`) and rejects the others
    with :class:`~segprompt.errors.UnsupportedPromptError`.
    """

    points: Points | None = None
    box: Box | None = None
    mask: MaskPrompt | None = None
    text: Text | None = None
    reference: VisualReference | None = None
    exemplars: Exemplars | None = None

    SCHEMA_VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for name, part_type in _PART_TYPES.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, part_type):
                raise PromptError(f"prompt.{name}: expected {part_type.__name__}, got {type(value).__name__}")

    def kinds(self) -> frozenset[str]:
        """The prompt kinds present, a subset of :data:`PROMPT_KINDS`."""
        return frozenset(name for name in PROMPT_KINDS if getattr(self, name) is not None)

    def is_empty(self) -> bool:
        return not self.kinds()

    def validate_for(self, image_hw: tuple[int, int]) -> "Prompt":
        """Check the geometric parts against an image of size ``(H, W)``; return ``self``.

        Raises:
            PromptError: a point, the box or an exemplar box lies outside the
                image, a binary mask prompt's shape differs from ``(H, W)`` or
                it is empty, or only exclude points say where the object is.
        """
        height, width = int(image_hw[0]), int(image_hw[1])
        others = self.kinds() - {"points"}
        if self.points is not None and not len(self.points.include) and not others:
            raise PromptError(
                "points: only exclude points (label 0), which say where the object is not; "
                "add an include point, a box or a mask"
            )
        if self.points is not None:
            x, y = self.points.xy[:, 0], self.points.xy[:, 1]
            outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
            if outside.any():
                index = int(np.flatnonzero(outside)[0])
                raise PromptError(
                    f"points.xy[{index}]: point (x={x[index]:g}, y={y[index]:g}) is outside the "
                    f"{width}x{height} (W x H) image"
                )
        if self.box is not None:
            b = self.box
            if b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height:
                raise PromptError(
                    f"box: ({b.x0:g}, {b.y0:g}, {b.x1:g}, {b.y1:g}) is outside the {width}x{height} (W x H) image"
                )
        if self.exemplars is not None:
            boxes = self.exemplars.boxes
            outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
            if outside.any():
                index = int(np.flatnonzero(outside)[0])
                x0, y0, x1, y1 = boxes[index]
                raise PromptError(
                    f"exemplars.boxes[{index}]: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the "
                    f"{width}x{height} (W x H) image"
                )
        if self.mask is not None and self.mask.kind == "binary":
            if self.mask.data.shape != (height, width):
                raise PromptError(
                    f"mask.data: mask shape {self.mask.data.shape} does not match the image shape {(height, width)}"
                )
            if not self.mask.data.any():
                raise PromptError("mask.data: the mask prompt is empty (no foreground pixel); mark the object in it")
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.SCHEMA_VERSION}
        for name in PROMPT_KINDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prompt":
        """The prompt :meth:`to_dict` wrote; a ``"schema"`` newer than :attr:`SCHEMA_VERSION` is refused.

        A dict without ``"schema"`` is read as version 1.
        """
        if not isinstance(data, dict):
            raise PromptError(f"prompt: expected a JSON object, got {type(data).__name__}")
        schema = data.get("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
            raise PromptError(f"prompt.schema: expected a positive integer version, got {schema!r}")
        if schema > cls.SCHEMA_VERSION:
            raise PromptError(
                f"prompt.schema: version {schema} is newer than this segprompt reads (version {cls.SCHEMA_VERSION}); "
                "update segprompt to read it"
            )
        unknown = set(data) - set(PROMPT_KINDS) - {"schema"}
        if unknown:
            raise PromptError(f"prompt: unknown field(s) {sorted(unknown)}; known: {list(PROMPT_KINDS)}")
        parts: dict[str, Any] = {}
        for name, part_type in _PART_TYPES.items():
            if data.get(name) is not None:
                try:
                    parts[name] = part_type.from_dict(data[name])
                except PromptError:
                    raise
                except (KeyError, TypeError, ValueError) as exc:  # a missing field, a list of 3 numbers for (x, y)...
                    raise PromptError(f"prompt.{name}: malformed entry ({exc!r})") from exc
        return cls(**parts)

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to JSON. Arrays are stored as zlib-compressed ``.npy`` in base64."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Prompt":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptError(f"prompt: invalid JSON ({exc})") from exc
        return cls.from_dict(data)


__all__ = [
    "LOW_RES_SIDE",
    "LOW_RES_SIDES",
    "MIN_BOX_SIDE",
    "PROMPT_KINDS",
    "Box",
    "Exemplars",
    "MaskPrompt",
    "Points",
    "Prompt",
    "PromptError",
    "PromptKind",
    "Text",
    "VisualReference",
    "decode_array",
    "encode_array",
]
