"""The "segprompt volume" dock widget: prompt the current slice of a 3-D image, propagate up / down / both.

A thin Qt front end over :class:`segprompt.volume.session.VolumeSession`:

* the image layer's data (NumPy, Dask or Zarr: read one slice at a time) is
  a :class:`~segprompt.volume.reader.Volume`: a 3-D layer is ``ZYX`` (an RGB
  one ``ZYXC``); the leading axes of a 4-D (or higher) layer are fixed at the
  viewer's current slider positions, and the axis just before ``Y`` is the
  stack the objects propagate along;
* prompts are a Points layer (include / exclude, ``T`` style toggle) and a
  Shapes layer (the last box) drawn on the current slice; napari positions
  ``(..., row, col)`` become segprompt ``(x, y)`` in one place
  (:func:`segprompt.annotation.rowcol_to_xy`);
* "segment slice" answers the prompt on the current slice for the current
  object id; "propagate ↑ / ↓ / ↕" carries every object's mask on the current
  slice up (increasing index), down or both; a prompt on any other slice
  followed by a propagation from there is a correction;
* every backend call runs in a background worker with the progress bar
  (slices embedded once each, kept in memory and, for the SAM family, in the
  embedding cache: "embed all slices" makes scrolling-and-prompting instant
  afterwards); results go to the Labels layer ``"<image> volume labels"``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.qt.threading import FunctionWorker
from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segprompt.annotation import box_from_vertices, rowcol_to_xy
from segprompt.backends import backend_names, create_from_options, get_backend_class
from segprompt.errors import SegpromptError
from segprompt.progress import ProgressCallback
from segprompt.prompts import Points as PointsPrompt
from segprompt.prompts import Prompt
from segprompt.volume.embeddings import SliceEmbeddings
from segprompt.volume.propagation import VIDEO_PROPAGATORS, ProjectionPropagator, Propagator, StopRule
from segprompt.volume.reader import SliceImages, Volume
from segprompt.volume.session import PropagationRun, VolumeSession

from ._tiling import TilingFields
from ._widget import (
    PROGRESS_STEPS,
    POINT_COLOURS,
    SegpromptWidget,
    _Failed,
    _in_background,
    _overlay_colormap,
    _ProgressRelay,
    device_picker,
    precision_picker,
)

if TYPE_CHECKING:
    import napari

#: The propagation choices: the video model where the backend has one, else projection.
PROPAGATIONS = ("auto", "projection", "video")
_UP, _DOWN, _BOTH = "up", "down", "both"


def layer_volume(layer: Image, current_step: tuple[int, ...]) -> tuple[Volume, int]:
    """The layer's data as a :class:`Volume` (``ZYX``, ``ZYXC`` if RGB; a 4-D layer ``TZYX`` with ``T`` fixed at
    ``current_step[0]``) and the index of its stack axis among the layer's axes.

    Raises:
        SegpromptError: a 2-D, multiscale or more than 4-D layer.
    """
    if layer.multiscale:
        raise SegpromptError(f"image layer {layer.name!r} is multiscale; open its full-resolution level as a layer")
    if layer.ndim < 3:
        raise SegpromptError(f"image layer {layer.name!r} is 2-D; use the segprompt widget for single images")
    if layer.ndim > 4:
        raise SegpromptError(f"image layer {layer.name!r} has {layer.ndim} axes; segprompt volume takes ZYX or TZYX layers")
    leading = layer.ndim - 3
    volume = Volume(layer.data, "T" * leading + "ZYX" + ("C" if layer.rgb else ""), name=layer.name)
    if leading:
        volume = volume.select(T=int(current_step[0]))
    return volume, leading


class VolumeWidget(QWidget):
    """Dock widget: prompt the current slice of a 3-D image layer, propagate the objects through the stack.

    Signals:
        session_ready: a session started on an image layer.
        labels_changed: the labels layer was updated (after a segment or a propagation).
        worker_done: a background job finished (the next one may start).
    """

    session_ready = Signal()
    labels_changed = Signal()
    worker_done = Signal()

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: VolumeSession | None = None
        self.image_layer: Image | None = None
        self.labels_layer: Labels | None = None
        self.points_layer: Points | None = None
        self.boxes_layer: Shapes | None = None
        self.stack_axis = 0  # the layer axis the slices are taken along
        self.worker: FunctionWorker | None = None
        self.last_runs: list[PropagationRun] = []
        self._propagator: Propagator | None = None
        self._include = True
        self._relay = _ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self._build_ui()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()

    # -- UI ----------------------------------------------------------------

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        model_box = QGroupBox("volume and model")
        form = QFormLayout(model_box)
        self.image_combo = QComboBox()
        self.backend_combo = QComboBox()
        self.backend_combo.addItems([name for name in backend_names() if self._propagates(name)])
        self.backend_combo.setCurrentText("classical")
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("default weights (SAM: official checkpoint)")
        self.weights_edit.setToolTip("a SAM checkpoint file, or a transformers model folder")
        self.propagation_combo = QComboBox()
        self.propagation_combo.addItems(PROPAGATIONS)
        self.propagation_combo.setToolTip("video: sam2 / sam3-tracker's memory; projection: each slice prompts the next")
        self.device_combo = device_picker()
        self.precision_combo = precision_picker()
        self.precision_combo.setToolTip(self.precision_combo.toolTip() + " (projection only; video runs in fp32)")
        self.tiling_fields = TilingFields()
        self.start_button = QPushButton("start on this image")
        self.start_button.clicked.connect(self._report(self.start))
        self.embed_button = QPushButton("embed all slices")
        self.embed_button.setToolTip("embed every slice once now, so prompting any slice later is instant")
        self.embed_button.clicked.connect(self._report(self.embed_all))
        form.addRow("image", self.image_combo)
        form.addRow("backend", self.backend_combo)
        form.addRow("weights", self.weights_edit)
        form.addRow("propagation", self.propagation_combo)
        form.addRow("device", self.device_combo)
        form.addRow("precision", self.precision_combo)
        form.addRow("tiles", self.tiling_fields)
        form.addRow(self.start_button)
        form.addRow(self.embed_button)
        layout.addWidget(model_box)

        prompt_box = QGroupBox("objects")
        form = QFormLayout(prompt_box)
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 2**31 - 1)
        new_object = QPushButton("new object")
        new_object.clicked.connect(self._report(self.new_object))
        row = QHBoxLayout()
        row.addWidget(self.label_spin)
        row.addWidget(new_object)
        self.include_button = QPushButton()
        self.include_button.clicked.connect(self.toggle_include)
        self.segment_button = QPushButton("segment this slice")
        self.segment_button.clicked.connect(self._report(self.segment_slice))
        directions = QHBoxLayout()
        self.direction_buttons = {}
        for direction, text in ((_UP, "propagate ↑"), (_DOWN, "propagate ↓"), (_BOTH, "propagate ↕")):
            button = QPushButton(text)
            button.setToolTip(f"{direction}: {'increasing' if direction == _UP else 'decreasing' if direction == _DOWN else 'both'} slice index")
            button.clicked.connect(self._report(functools.partial(self.propagate, direction)))
            directions.addWidget(button)
            self.direction_buttons[direction] = button
        form.addRow("object id", row)
        form.addRow("new points", self.include_button)
        form.addRow(self.segment_button)
        form.addRow(directions)
        layout.addWidget(prompt_box)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.status_label = QLabel("pick a 3-D image layer and press 'start'")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.setMaximumWidth(420)
        self._show_include()

    @staticmethod
    def _propagates(backend: str) -> bool:
        """Whether ``backend`` can propagate (takes a mask or a box, or has a video model)."""
        if backend in VIDEO_PROPAGATORS:
            return True
        try:
            return bool({"mask", "box"} & get_backend_class(backend).accepts)
        except SegpromptError:
            return False

    def _refresh_layer_choices(self, *_: Any) -> None:
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim >= 3]
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    #: A UI action whose user mistakes become notifications (the annotator widget's).
    _report = staticmethod(SegpromptWidget._report)

    def toggle_include(self) -> None:
        """Switch the label of the next points between include and exclude."""
        self._include = not self._include
        self._show_include()

    def _show_include(self) -> None:
        self.include_button.setText("include" if self._include else "exclude")
        self.include_button.setStyleSheet(f"color: {POINT_COLOURS[self._include]}")
        if self.points_layer is not None:
            self.points_layer.feature_defaults["include"] = self._include

    # -- session -------------------------------------------------------------

    def use_propagator(self, propagator: Propagator) -> None:
        """Use an already built propagator (the napari console, tests) for the next :meth:`start`."""
        self._propagator = propagator

    def _make_propagator(
        self, images: SliceImages, backend: str, path: str, method: str, tiling: dict[str, Any], device: str, precision: str
    ) -> Propagator:
        """The chosen backend's propagator (runs in the worker: loading weights is slow; the choices are read before)."""
        if self._propagator is not None:
            return self._propagator
        if method == "auto":
            method = "video" if backend in VIDEO_PROPAGATORS else "projection"
        if method == "video":
            if backend not in VIDEO_PROPAGATORS:
                raise SegpromptError(f"backend {backend!r} has no video model; those that do: {', '.join(VIDEO_PROPAGATORS.names())}")
            if tiling:
                raise SegpromptError(f"tiles: {backend}'s video model sees whole frames; tile slices with projection propagation")
            if precision != "fp32":
                raise SegpromptError(f"precision {precision}: video propagation runs in fp32 only")
            return VIDEO_PROPAGATORS.get(backend)(images, model_dir=path or None, device=device)
        from pathlib import Path

        options: dict[str, Any] = {"device": device, "precision": precision, **tiling}  # dropped where the backend has no use
        if path:
            options["model_dir" if Path(path).expanduser().is_dir() else "checkpoint"] = path
        segmenter = create_from_options(backend, **options)
        return ProjectionPropagator(segmenter, SliceEmbeddings(segmenter, images))

    def start(self) -> None:
        """Start a session on the chosen layer (the backend loads in a worker)."""
        name = self.image_combo.currentText()
        if name not in self.viewer.layers:
            raise SegpromptError("no 3-D image layer: open a volume (a stack of 2-D images) first")
        layer = self.viewer.layers[name]
        volume, stack_axis = layer_volume(layer, self.viewer.dims.current_step)

        choices = (self.backend_combo.currentText(), self.weights_edit.text().strip(), self.propagation_combo.currentText(),
                   self.tiling_fields.options(), self.device_combo.currentText(), self.precision_combo.currentText())

        def build(_progress: ProgressCallback) -> Propagator:
            return self._make_propagator(SliceImages(volume), *choices)

        self._start_job(build, functools.partial(self._on_started, layer, stack_axis), f"loading {self.backend_combo.currentText()}")

    def _on_started(self, layer: Image, stack_axis: int, propagator: Propagator) -> None:
        self.session = VolumeSession(propagator, StopRule())
        self.image_layer, self.stack_axis = layer, stack_axis
        self._ensure_layers()
        self.label_spin.setValue(1)
        height, width = propagator.image_hw
        self.status_label.setText(f"{layer.name}: {propagator.n_slices} slices of {width}x{height}, {propagator.method}")
        self.session_ready.emit()

    def _ensure_layers(self) -> None:
        session, layer = self.session, self.image_layer
        shape = (session.n_slices, *session.image_hw)
        name = f"{layer.name} volume labels"
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if not (isinstance(existing, Labels) and existing.data.shape == shape):
            if existing is not None:
                self.viewer.layers.remove(existing)
            translate = tuple(layer.translate[self.stack_axis : self.stack_axis + 3])
            scale = tuple(layer.scale[self.stack_axis : self.stack_axis + 3])
            existing = self.viewer.add_labels(np.zeros(shape, np.int32), name=name, opacity=0.5,
                                              colormap=_overlay_colormap(), translate=translate, scale=scale)
        self.labels_layer = existing
        for attribute, maker in (("points_layer", self._add_points), ("boxes_layer", self._add_boxes)):
            current = getattr(self, attribute)
            if current is None or current not in self.viewer.layers:
                setattr(self, attribute, maker(layer.ndim))
        self.points_layer.mode = "add"
        self.viewer.layers.selection.active = self.points_layer

    def _add_points(self, ndim: int) -> Points:
        # The image's scale and translation: a point's data coordinates are the image's pixel indices.
        points = self.viewer.add_points(
            ndim=ndim, name="volume points", features={"include": np.zeros(0, bool)}, face_color="include",
            face_color_cycle=POINT_COLOURS, border_color="white", size=4,
            scale=self.image_layer.scale, translate=self.image_layer.translate,
        )
        points.feature_defaults["include"] = self._include
        return points

    def _add_boxes(self, ndim: int) -> Shapes:
        return self.viewer.add_shapes(
            ndim=ndim, name="volume box", face_color="transparent", edge_color="yellow", edge_width=1,
            scale=self.image_layer.scale, translate=self.image_layer.translate,
        )

    def _require_session(self) -> VolumeSession:
        if self.session is None:
            raise SegpromptError("no session yet: pick a 3-D image layer and press 'start on this image'")
        return self.session

    @property
    def current_slice(self) -> int:
        """The slice the viewer shows, as an index along the image's stack axis."""
        position = self.image_layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(np.rint(position[self.stack_axis]), 0, self._require_session().n_slices - 1))

    def new_object(self) -> int:
        """Make the next unused id current, with no prompt drawn yet (prompts belong to one object); returns it."""
        label = self._require_session().next_label
        self.label_spin.setValue(label)
        for layer in (self.points_layer, self.boxes_layer):
            if layer is not None and len(layer.data):
                layer.data = [] if isinstance(layer, Shapes) else np.zeros((0, layer.ndim))
        return label

    def current_prompt(self) -> Prompt | None:
        """The points and the last box drawn on the current slice, in ``(x, y)`` pixels; ``None`` if none."""
        session = self._require_session()
        index, axis = self.current_slice, self.stack_axis
        parts: dict[str, Any] = {}
        if self.points_layer is not None and len(self.points_layer.data):
            on_slice = np.rint(self.points_layer.data[:, axis]).astype(int) == index
            if on_slice.any():
                labels = self.points_layer.features["include"].to_numpy(dtype=np.int64)[on_slice]
                parts["points"] = PointsPrompt(rowcol_to_xy(self.points_layer.data[on_slice]), labels)
        if self.boxes_layer is not None:
            boxes = [v for v in self.boxes_layer.data if np.all(np.rint(v[:, axis]).astype(int) == index)]
            if boxes:
                parts["box"] = box_from_vertices(boxes[-1], session.image_hw)
        return Prompt(**parts) if parts else None

    def clear_prompts(self) -> None:
        """Remove the points and boxes of the current slice."""
        axis, index = self.stack_axis, self.current_slice
        if self.points_layer is not None and len(self.points_layer.data):
            keep = np.rint(self.points_layer.data[:, axis]).astype(int) != index
            self.points_layer.data = self.points_layer.data[keep]
        if self.boxes_layer is not None and len(self.boxes_layer.data):
            self.boxes_layer.data = [v for v in self.boxes_layer.data if not np.all(np.rint(v[:, axis]).astype(int) == index)]

    # -- work ----------------------------------------------------------------

    def segment_slice(self) -> None:
        """Answer the current slice's prompt for the current object id (in a worker)."""
        session = self._require_session()
        prompt = self.current_prompt()
        if prompt is None:
            raise SegpromptError(f"no prompt on slice {self.current_slice}: add points or draw a box on it")
        label, index = self.label_spin.value(), self.current_slice

        def segment(_progress: ProgressCallback) -> list[int]:
            session.prompt(label, index, prompt)
            return [index]

        self._start_job(segment, self._on_slices_changed, f"segmenting object {label} on slice {index}")

    def propagate(self, direction: str) -> None:
        """Carry every object's mask on the current slice up, down or both (in a worker)."""
        session = self._require_session()
        index = self.current_slice

        def run(progress: ProgressCallback) -> list[PropagationRun]:
            return session.propagate(index, direction=direction, progress=progress)

        self._start_job(run, self._on_propagated, f"propagating {direction} from slice {index}")

    def embed_all(self) -> None:
        """Embed every slice once now (a first pass), with progress."""
        session = self._require_session()
        self._start_job(lambda progress: session.propagator.embeddings.precompute(progress=progress),
                        lambda _result: self.status_label.setText(f"{session.n_slices} slices embedded"), "embedding every slice")

    def _start_job(self, job: Callable[[ProgressCallback], Any], on_result: Callable[[Any], None], message: str) -> None:
        if self.worker is not None:
            raise SegpromptError("a background job is still running; wait for it to finish")
        self._set_busy(True)
        self.status_label.setText(f"{message} …")
        self.progress_bar.setRange(0, 0)
        self.worker = _in_background(job, self._relay)
        self.worker.returned.connect(functools.partial(self._on_returned, on_result))
        self.worker.finished.connect(self._on_finished)
        self.worker.start()

    def _set_busy(self, busy: bool) -> None:
        for button in (self.start_button, self.embed_button, self.segment_button, *self.direction_buttons.values()):
            button.setEnabled(not busy)

    def _on_returned(self, on_result: Callable[[Any], None], result: Any) -> None:
        if isinstance(result, _Failed):
            self.status_label.setText("failed: " + result.message)
            show_error(result.message)
            return
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(PROGRESS_STEPS)
        on_result(result)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_busy(False)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.worker_done.emit()

    #: ``progress(done, total, message)`` on :attr:`progress_bar`, as the annotator widget shows it.
    _on_progress = SegpromptWidget._on_progress

    def _on_propagated(self, runs: list[PropagationRun]) -> None:
        self.last_runs = runs
        self._on_slices_changed(range(self._require_session().n_slices))
        self.status_label.setText("\n".join(run.describe() for run in runs))

    def _on_slices_changed(self, indices: Any) -> None:
        session, data = self._require_session(), self.labels_layer.data
        for index in indices:
            data[index] = session.plane(index)
        self.labels_layer.refresh()
        self.labels_changed.emit()


__all__ = ["VolumeWidget", "layer_volume"]
