"""Several objects in a volume: prompts on any slice, propagation up and down, corrections that re-propagate.

A :class:`VolumeSession` holds, per object (a label id ``>= 1``), its
*anchors* (the slices the user prompted, or drew a mask on) and its mask on
every slice it reached. The CLI and the napari widget drive it the same way::

    session = VolumeSession(propagator)
    session.prompt(1, 40, Prompt(box=Box(...)))      # object 1 on slice 40
    session.propagate(40, direction="both")          # up and down until it ends
    session.prompt(1, 55, Prompt(points=...))        # a correction on slice 55 ...
    session.propagate(55, labels=[1])                # ... re-propagates from there
    write_label_volume("labels.ome.zarr", session.labels)

Directions: ``"up"`` is increasing slice index (later frames of a time
series), ``"down"`` decreasing, ``"both"`` up then down. A run of an object
from slice ``k`` replaces that object's propagated masks on its way: between
``k`` and the object's next anchor in that direction (or the end of the
volume), the old masks are dropped first, so a run that now stops earlier
leaves nothing stale behind; anchors are never overwritten by propagation.

Label planes: objects are painted in increasing id order and a pixel stays
with the first object that claims it (as accepted objects do in the 2-D
annotator, :class:`~segprompt.annotation.AnnotationSession`). Masks are kept
as bounding-box crops, so a long object in a large volume costs its own
pixels, not ``N x H x W``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

from ..errors import PromptError, SegpromptError
from ..progress import ProgressCallback, no_progress
from ..prompts import MaskPrompt, Prompt
from .propagation import Propagator, SliceResult, StopRule

Direction = Literal["up", "down", "both"]
DIRECTIONS: tuple[Direction, ...] = ("both", "up", "down")
#: ``SliceMask.method`` of a mask the user drew.
DRAWN = "drawn by the user"


@dataclass(frozen=True, eq=False)
class SliceMask:
    """One object's mask on one slice, kept as its bounding-box crop.

    Attributes:
        top, left: the crop's first row and column in the slice.
        crop: ``(h, w)`` bool.
        score, method: the backend's score and method (see :class:`SliceResult`).
        logits: the backend's low-resolution logits, kept for anchors only
            (a run starting there prompts the next slice with them).
    """

    top: int
    left: int
    crop: np.ndarray
    score: float
    method: str | None = None
    logits: np.ndarray | None = None

    @classmethod
    def from_result(cls, result: SliceResult, keep_logits: bool) -> SliceMask:
        rows, cols = np.nonzero(result.mask)
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), bool), result.score, result.method, result.logits if keep_logits else None)
        top, left = int(rows.min()), int(cols.min())
        crop = np.ascontiguousarray(result.mask[top : rows.max() + 1, left : cols.max() + 1])
        return cls(top, left, crop, result.score, result.method, result.logits if keep_logits else None)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.crop))

    def window(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.crop.shape[0]), slice(self.left, self.left + self.crop.shape[1])

    def full(self, image_hw: tuple[int, int]) -> np.ndarray:
        """The ``(H, W)`` bool mask."""
        mask = np.zeros(image_hw, bool)
        mask[self.window()] = self.crop
        return mask

    def result(self, image_hw: tuple[int, int]) -> SliceResult:
        return SliceResult(self.full(image_hw), self.score, self.method, self.logits)


@dataclass
class VolumeObject:
    """One object of a :class:`VolumeSession`.

    Attributes:
        label: its id (``>= 1``).
        anchors: slice -> the prompt given there (a drawn mask is a binary :class:`MaskPrompt`).
        masks: slice -> its mask there.
    """

    label: int
    anchors: dict[int, Prompt] = field(default_factory=dict)
    masks: dict[int, SliceMask] = field(default_factory=dict)

    @property
    def slices(self) -> list[int]:
        """The slices it has a mask on, in order."""
        return sorted(self.masks)


@dataclass(frozen=True)
class PropagationRun:
    """What one run of one object in one direction did.

    Attributes:
        label: the object.
        start: the slice it started from.
        direction: ``"up"`` or ``"down"``.
        slices: the slices it wrote, in the order it wrote them.
        stopped_at: the slice whose answer stopped it (not written), or ``None``
            when it ran to the end of the volume or to the next anchor.
        reason: why it stopped, in words.
    """

    label: int
    start: int
    direction: str
    slices: tuple[int, ...]
    stopped_at: int | None
    reason: str

    def describe(self) -> str:
        """``object 1 up from 40: 15 slices (41-55), stopped at 56: score 0.31 < 0.5``."""
        reached = f" ({self.slices[0]}-{self.slices[-1]})" if self.slices else ""
        where = f" at {self.stopped_at}" if self.stopped_at is not None else ""
        return f"object {self.label} {self.direction} from {self.start}: {len(self.slices)} slices{reached}, stopped{where}: {self.reason}"


class LabelPlanesView:
    """The session's ``(N, H, W)`` label volume, made one plane at a time (what the writers and napari read)."""

    def __init__(self, session: VolumeSession) -> None:
        self._session = session

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._session.n_slices, *self._session.image_hw)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32)

    def __len__(self) -> int:
        return self._session.n_slices

    def __getitem__(self, index: int) -> np.ndarray:
        return self._session.plane(int(index))


class VolumeSession:
    """Objects in a volume, their anchors and masks (see the module docstring).

    Args:
        propagator: segments slices (:class:`~segprompt.volume.propagation.ProjectionPropagator`
            or a video propagator).
        stop: when runs stop.
    """

    def __init__(self, propagator: Propagator, stop: StopRule = StopRule()) -> None:
        self.propagator = propagator
        self.stop = stop
        self.objects: dict[int, VolumeObject] = {}

    @property
    def n_slices(self) -> int:
        return self.propagator.n_slices

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.propagator.image_hw

    @property
    def next_label(self) -> int:
        return max(self.objects, default=0) + 1

    @property
    def labels(self) -> LabelPlanesView:
        """The label volume, plane by plane (for :func:`~segprompt.volume.writer.write_label_volume`)."""
        return LabelPlanesView(self)

    # -- anchors -------------------------------------------------------------

    def _check(self, label: int, index: int) -> None:
        if int(label) < 1:
            raise SegpromptError(f"object ids start at 1, got {label}")
        if not 0 <= int(index) < self.n_slices:
            raise SegpromptError(f"slice {index} is out of range; the volume has {self.n_slices} slices (0 to {self.n_slices - 1})")

    def _object(self, label: int) -> VolumeObject:
        return self.objects.setdefault(int(label), VolumeObject(int(label)))

    def prompt(self, label: int, index: int, prompt: Prompt) -> SliceResult:
        """Segment object ``label`` on slice ``index`` from ``prompt``; the slice becomes one of its anchors.

        A prompt on a slice the object already has replaces its mask there
        (a correction); :meth:`propagate` from that slice carries it on.

        Raises:
            PromptError, UnsupportedPromptError: the prompt does not fit the slices or the backend.
        """
        self._check(label, index)
        prompt.validate_for(self.image_hw)
        result = self.propagator.segment(int(label), int(index), prompt)
        obj = self._object(label)
        obj.anchors[int(index)] = prompt
        obj.masks[int(index)] = SliceMask.from_result(result, keep_logits=True)
        return result

    def set_mask(self, label: int, index: int, mask: np.ndarray) -> None:
        """Take a drawn ``(H, W)`` mask as object ``label``'s anchor on slice ``index``, exactly as drawn."""
        self._check(label, index)
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(self.image_hw):
            raise PromptError(f"mask of object {label} on slice {index}: shape {mask.shape} is not the slices' {self.image_hw}")
        if not mask.any():
            raise PromptError(f"mask of object {label} on slice {index} is empty")
        self.propagator.anchor_mask(int(label), int(index), mask)
        obj = self._object(label)
        obj.anchors[int(index)] = Prompt(mask=MaskPrompt(mask))
        obj.masks[int(index)] = SliceMask.from_result(SliceResult(mask, 1.0, DRAWN), keep_logits=False)

    def remove(self, label: int) -> None:
        """Drop object ``label`` everywhere."""
        if self.objects.pop(int(label), None) is not None:
            self.propagator.forget(int(label))

    # -- propagation ---------------------------------------------------------

    def _bound(self, obj: VolumeObject, start: int, step: int) -> int:
        """The first slice a run from ``start`` must not reach: the next anchor that way, or just past the volume."""
        ahead = [k for k in obj.anchors if (k - start) * step > 0]
        if ahead:
            return min(ahead, key=lambda k: abs(k - start))
        return self.n_slices if step > 0 else -1

    def propagate(
        self,
        index: int,
        labels: Iterable[int] | None = None,
        direction: Direction = "both",
        progress: ProgressCallback = no_progress,
    ) -> list[PropagationRun]:
        """Carry the objects' masks on slice ``index`` up and/or down until each stops.

        Args:
            index: the slice to start from; an object without a mask there is reported and skipped.
            labels: which objects (default all).
            direction: ``"up"``, ``"down"`` or ``"both"``.
            progress: ``progress(done, total, message)`` per slice.

        Returns:
            one :class:`PropagationRun` per object and direction.
        """
        if direction not in DIRECTIONS:
            raise SegpromptError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if not 0 <= int(index) < self.n_slices:
            raise SegpromptError(f"slice {index} is out of range; the volume has {self.n_slices} slices (0 to {self.n_slices - 1})")
        index = int(index)
        chosen = sorted(self.objects) if labels is None else [int(label) for label in labels]
        unknown = [label for label in chosen if label not in self.objects]
        if unknown:
            raise SegpromptError(f"no object {unknown[0]}; objects: {', '.join(map(str, sorted(self.objects))) or 'none'}")
        runs: list[PropagationRun] = []
        starting = []
        for label in chosen:
            if index in self.objects[label].masks:
                starting.append(label)
            else:
                runs.append(PropagationRun(label, index, direction, (), None, f"no mask on slice {index} to start from"))
        steps = [step for name, step in (("up", 1), ("down", -1)) if direction in (name, "both")]
        bounds = {(label, step): self._bound(self.objects[label], index, step) for label in starting for step in steps}
        total = sum(max((abs(bounds[(label, step)] - index) - 1 for label in starting), default=0) for step in steps)
        done = 0
        for step in steps:
            runs.extend(self._run(index, starting, step, bounds, progress, done, total))
            done += max((abs(bounds[(label, step)] - index) - 1 for label in starting), default=0)
        progress(total, total, "propagation finished")
        return runs

    def _run(
        self,
        start: int,
        labels: Sequence[int],
        step: int,
        bounds: dict[tuple[int, int], int],
        progress: ProgressCallback,
        done: int,
        total: int,
    ) -> list[PropagationRun]:
        """One direction for several objects in lockstep (each slice embedded once)."""
        name = "up" if step > 0 else "down"
        hw = self.image_hw
        previous: dict[int, SliceResult] = {}
        written: dict[int, list[int]] = {label: [] for label in labels}
        finished: dict[int, tuple[int | None, str]] = {}
        for label in labels:
            obj = self.objects[label]
            stale = [k for k in obj.masks if k not in obj.anchors and (k - start) * step > 0 and (bounds[(label, step)] - k) * step > 0]
            for k in stale:
                del obj.masks[k]
            self.propagator.discard(label, stale)
            previous[label] = obj.masks[start].result(hw)
            self.propagator.start(label, start, previous[label])
        index = start + step
        while previous:
            for label in [label for label in previous if index == bounds[(label, step)]]:
                edge = "the end of the volume" if index in (-1, self.n_slices) else f"object {label}'s prompt on slice {index}"
                finished[label] = (None, f"reached {edge}")
                del previous[label]
            if not previous:
                break
            progress(done + abs(index - start) - 1, total, f"slice {index} ({name}): object{'s' if len(previous) > 1 else ''} "
                     f"{', '.join(map(str, previous))}")
            answers = self.propagator.step(index, previous, reverse=step < 0)
            for label, result in answers.items():
                reason = self.stop.reason(result, previous[label])
                if reason is not None:
                    finished[label] = (index, reason)
                    del previous[label]
                    continue
                self.objects[label].masks[index] = SliceMask.from_result(result, keep_logits=False)
                written[label].append(index)
                previous[label] = result
            index += step
        return [PropagationRun(label, start, name, tuple(written[label]), *finished[label]) for label in labels]

    # -- reading -------------------------------------------------------------

    def mask(self, label: int, index: int) -> np.ndarray | None:
        """Object ``label``'s ``(H, W)`` mask on slice ``index``, or ``None`` where it has none."""
        obj = self.objects.get(int(label))
        found = None if obj is None else obj.masks.get(int(index))
        return None if found is None else found.full(self.image_hw)

    def plane(self, index: int) -> np.ndarray:
        """The ``(H, W)`` int32 label plane of slice ``index`` (overlaps: the lower id keeps the pixel)."""
        plane = np.zeros(self.image_hw, np.int32)
        for label in sorted(self.objects):
            found = self.objects[label].masks.get(int(index))
            if found is None or found.crop.size == 0:
                continue
            region = plane[found.window()]
            region[found.crop & (region == 0)] = label
        return plane

    def to_array(self) -> np.ndarray:
        """The whole ``(N, H, W)`` int32 label volume in memory."""
        return np.stack([self.plane(k) for k in range(self.n_slices)]) if self.n_slices else np.zeros((0, *self.image_hw), np.int32)


__all__ = ["DIRECTIONS", "DRAWN", "Direction", "LabelPlanesView", "PropagationRun", "SliceMask", "VolumeObject", "VolumeSession"]
