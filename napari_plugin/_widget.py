"""The "segprompt" dock widget: a thin Qt front end over :class:`segprompt.annotation.AnnotationSession`.

Everything that decides what a mask is lives in the headless core
(:mod:`segprompt.annotation`, the backends, :class:`segprompt.cache.EmbeddingCache`);
this module only maps napari layers to prompts, runs the encoder and the
decoder off the GUI thread and shows results. Prompt layers hold napari ``(row, col)`` positions;
the one conversion to segprompt ``(x, y)`` is
:func:`segprompt.annotation.rowcol_to_xy`.

Key bindings are viewer-wide (see :data:`KEY_BINDINGS`): ``T`` toggles the
point label as in micro-sam's annotator; the others are keys napari's own
layers leave free.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from napari.layers import Image, Labels, Points, Shapes
from napari.qt.threading import FunctionWorker, thread_worker
from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from segprompt.annotation import AnnotationSession, box_from_vertices, rowcol_to_xy
from segprompt.backends import Segmenter, backend_names, backend_options, create_from_options, get_backend_class
from segprompt.backends.base import Embedding
from segprompt.backends.tiled import TiledSegmenter
from segprompt.backends.sam_family import SamFamilySegmenter
from segprompt.progress import ProgressCallback
from segprompt.cache import EmbeddingCache
from segprompt.checkpoints import SAM_CHECKPOINTS, official_checkpoint
from segprompt.devices import available_devices, device_memory_error
from segprompt.errors import SegpromptError
from segprompt.hub import local_model_dir
from segprompt.io import OVERLAY_COLOURS
from segprompt.precision import PRECISIONS
from segprompt.prompts import Points as PointsPrompt
from segprompt.prompts import Exemplars, Prompt, Text, VisualReference
from segprompt.semantic import SemanticSegmentation, segment_classes

from ._objects_panel import ObjectsPanel
from ._tiling import TilingFields

if TYPE_CHECKING:
    import napari

#: Key -> action; bound on the viewer when the widget is created.
KEY_BINDINGS: dict[str, str] = {
    "T": "toggle include / exclude for the next points",
    "N": "show the next candidate mask (by score)",
    "Shift-N": "show the previous candidate mask",
    "K": "accept (keep) the preview as a new object",
    "U": "undo the last edit (accept, rename, delete, re-prompt, refine, everything)",
    "Shift-U": "redo the last undone edit",
    "Q": "clear the prompts and the preview",
}

#: Point colours by the layer's boolean ``include`` feature (a bool, not the 0/1
#: label, so napari maps it as categories without guessing).
POINT_COLOURS = {True: "lime", False: "red"}
#: Edits closer together than this re-run the decoder once.
DEBOUNCE_MS = 30
PROGRESS_STEPS = 1000
#: The preview is one bright colour, apart from every object colour.
PREVIEW_COLOURMAP = DirectLabelColormap(color_dict={None: "transparent", 1: "yellow"})
_NONE = "(none)"
_CUSTOM = "custom: "
#: What a job's out-of-memory notification suggests unless the job says otherwise.
MEMORY_ADVICE = "choose precision bf16 or a smaller image"
#: A chosen backend: ``(backend, SAM model type or size, weights path, device, precision)``.
SegmenterKey = tuple[str, str, str, str, str]


def device_picker() -> QComboBox:
    """A combo box of this machine's devices, ``auto`` (CUDA, then MPS, then CPU) first."""
    combo = QComboBox()
    combo.addItems(available_devices())
    combo.setToolTip("where the model runs: auto picks CUDA, then Apple MPS, then the CPU")
    return combo


def precision_picker() -> QComboBox:
    """A combo box of the image encoder's precisions (:mod:`segprompt.precision`), fp32 first."""
    combo = QComboBox()
    combo.addItems(PRECISIONS)
    combo.setToolTip("image-encoder arithmetic: bf16 / fp16 are several times faster on GPUs, masks differ slightly")
    return combo


@dataclass(frozen=True)
class _Failed:
    """A user-facing failure of the background job (shown as a notification)."""

    message: str


class _ProgressRelay(QObject):
    """Carries ``progress(done, total, message)`` calls from the worker thread to the GUI thread.

    ``done`` and ``total`` travel as Python objects: byte counts of a checkpoint
    download exceed a Qt ``int``.
    """

    progressed = Signal(object, object, str)


@thread_worker
def _in_background(job: Callable[[ProgressCallback], Any], relay: _ProgressRelay, memory_advice: str = MEMORY_ADVICE) -> Any:
    """Run ``job(progress)`` off the GUI thread; a user-facing failure comes back as :class:`_Failed`.

    A CUDA out-of-memory error (recognised by its type) says what to lower
    (``memory_advice``) or to choose the CPU.
    """
    too_large = "not enough memory for this image; crop or downscale it first"
    try:
        return job(relay.progressed.emit)
    except SegpromptError as exc:
        return _Failed(str(exc))
    except MemoryError:
        return _Failed(too_large)
    except torch.cuda.OutOfMemoryError as exc:
        return _Failed(str(device_memory_error(exc, memory_advice, cpu_choice="device cpu")))
    except RuntimeError as exc:  # a failed CPU allocation has no exception type of its own in torch
        if "can't allocate memory" in str(exc):
            return _Failed(too_large)
        raise


class SegpromptWidget(QWidget):
    """Dock widget: embed an image, prompt with points / boxes / text / a reference, accept objects.

    Signals:
        preview_updated: emitted after every preview refresh.
        embedding_ready: emitted when a session has started on a new embedding.
        classes_ready: emitted when a semantic label map has been added.
        objects_changed: emitted after any edit of the objects (accept, undo, redo, load, the whole-image panel's).
    """

    preview_updated = Signal()
    embedding_ready = Signal()
    classes_ready = Signal()
    objects_changed = Signal()

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.cache = EmbeddingCache()
        self.session: AnnotationSession | None = None
        self.image_layer: Image | None = None
        self.points_layer: Points | None = None
        self.boxes_layer: Shapes | None = None
        self.exemplars_layer: Shapes | None = None
        self.preview_layer: Labels | None = None
        self._preview_shows_instances = False
        self.objects_layer: Labels | None = None
        self.worker: FunctionWorker | None = None  # the one background job at a time
        self._preview_worker: FunctionWorker | None = None  # the one decoder run at a time
        self._preview_request = 0  # bumped by every prompt change; older answers are dropped
        self._preview_answered = 0  # the request the shown preview answers
        self._accept_when_ready = False
        self._segmenters: dict[SegmenterKey, Segmenter] = {}
        self._backend_options: dict[SegmenterKey, dict[str, Any]] = {}  # saved in the session, for replay
        self._include = True
        self._relay = _ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._report(self.refresh_preview))

        self._build_ui()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()
        self._bind_keys()

    # -- UI ----------------------------------------------------------------

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)

        model_box = QGroupBox("model")
        form = QFormLayout(model_box)
        self.image_combo = QComboBox()
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(backend_names())
        # SAM when its weights are here; else the zero-weight classical backend works offline at once.
        self.backend_combo.setCurrentText("sam" if official_checkpoint("vit_b").path.is_file() else "classical")
        self.model_type_combo = QComboBox()
        self.model_type_combo.addItems(sorted(SAM_CHECKPOINTS))  # vit_b (the smallest) first
        self.variant_combo = QComboBox()  # the released sizes of the chosen backend (sam2, sam-hq), if several
        self.variant_combo.setToolTip("released size, used when no model folder is given")
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("default (SAM: official checkpoint)")
        self.checkpoint_edit.setToolTip("a SAM checkpoint file (.pth), or a transformers model folder")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_checkpoint)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoint_edit)
        checkpoint_row.addWidget(browse)
        self.checkpoint_status = QLabel()
        self.checkpoint_status.setWordWrap(True)
        self.device_combo = device_picker()
        self.precision_combo = precision_picker()
        self.tiling_fields = TilingFields()
        self.embed_button = QPushButton("compute embedding")
        self.embed_button.clicked.connect(self._report(self.compute_embedding))
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.status_label = QLabel("no embedding")
        self.status_label.setWordWrap(True)
        form.addRow("image", self.image_combo)
        form.addRow("backend", self.backend_combo)
        form.addRow("SAM model", self.model_type_combo)
        form.addRow("size", self.variant_combo)
        form.addRow("weights", checkpoint_row)
        form.addRow(self.checkpoint_status)
        form.addRow("device", self.device_combo)
        form.addRow("precision", self.precision_combo)
        form.addRow("tiles", self.tiling_fields)
        form.addRow(self.embed_button)
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)
        self.backend_combo.currentTextChanged.connect(self._update_variants)
        for combo in (self.backend_combo, self.model_type_combo, self.variant_combo):
            combo.currentTextChanged.connect(self._update_checkpoint_status)
        self.checkpoint_edit.textChanged.connect(self._update_checkpoint_status)
        layout.addWidget(model_box)

        prompt_box = QGroupBox("prompts")
        form = QFormLayout(prompt_box)
        self.include_button = QPushButton()
        self.include_button.clicked.connect(self.toggle_include)
        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("e.g. polyp (text backends; sam3: every instance)")
        self.text_edit.editingFinished.connect(self.schedule_preview)
        self.reference_image_combo = QComboBox()
        self.reference_mask_combo = QComboBox()
        for combo in (self.reference_image_combo, self.reference_mask_combo):
            combo.currentTextChanged.connect(self.schedule_preview)
        self.candidate_label = QLabel("no preview")
        form.addRow("new points", self.include_button)
        form.addRow("text", self.text_edit)
        form.addRow("reference image", self.reference_image_combo)
        form.addRow("reference mask", self.reference_mask_combo)
        form.addRow(self.candidate_label)
        layout.addWidget(prompt_box)

        semantic_box = QGroupBox("semantic: one label per class")
        form = QFormLayout(semantic_box)
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText("e.g. cup, saucer (text backends)")
        self.classes_edit.setToolTip(
            "comma-separated class names, each used as a text prompt; leave empty to use every id of the "
            "reference mask as one class, with the reference image (visual-reference backends)"
        )
        self.classes_button = QPushButton("label classes")
        self.classes_button.clicked.connect(self._report(self.segment_classes))
        form.addRow("classes", self.classes_edit)
        form.addRow(self.classes_button)
        layout.addWidget(semantic_box)

        objects_box = QGroupBox("objects")
        grid = QVBoxLayout(objects_box)
        row = QHBoxLayout()
        for text, action in (
            ("accept [K]", self.accept),
            ("undo [U]", self.undo),
            ("redo [⇧U]", self.redo),
            ("clear [Q]", self.clear_prompts),
        ):
            button = QPushButton(text)
            button.clicked.connect(self._report(action))
            row.addWidget(button)
        grid.addLayout(row)
        row = QHBoxLayout()
        save, load = QPushButton("save…"), QPushButton("load…")
        save.clicked.connect(self._report(self._save_dialog))
        load.clicked.connect(self._report(self._load_dialog))
        row.addWidget(save)
        row.addWidget(load)
        grid.addLayout(row)
        keys = QLabel("keys (hover for help): " + "  ".join(KEY_BINDINGS))
        keys.setToolTip("\n".join(f"{key}: {action}" for key, action in KEY_BINDINGS.items()))
        keys.setWordWrap(True)
        grid.addWidget(keys)
        layout.addWidget(objects_box)
        self.objects_panel = ObjectsPanel(self)
        layout.addWidget(self.objects_panel)
        layout.addStretch(1)
        self.setMaximumWidth(420)  # leave the canvas most of the window

        self._show_include()
        self._update_variants()
        self._update_checkpoint_status()

    def _update_variants(self, *_: Any) -> None:
        """Offer the chosen backend's released sizes (``hub_ids``), its default first; none for other backends."""
        try:
            cls = get_backend_class(self.backend_combo.currentText())
        except SegpromptError:
            cls = None
        variants = dict(cls.hub_ids) if cls is not None and issubclass(cls, SamFamilySegmenter) else {}
        self.variant_combo.blockSignals(True)
        self.variant_combo.clear()
        if len(variants) > 1:
            default = cls.default_variant
            self.variant_combo.addItems([default] + [v for v in variants if v != default])
        self.variant_combo.setEnabled(len(variants) > 1)
        self.variant_combo.blockSignals(False)

    def _refresh_layer_choices(self, *_: Any) -> None:
        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        masks = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels) and layer is not self.preview_layer]
        for combo, names in (
            (self.image_combo, images),
            (self.reference_image_combo, [_NONE, *images]),
            (self.reference_mask_combo, [_NONE, *masks]),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)

    def _update_checkpoint_status(self, *_: Any) -> None:
        """Show what the chosen backend accepts (or why it is unavailable) and whether its weights are here."""
        backend = self.backend_combo.currentText()
        custom = backend.startswith(_CUSTOM)
        self.checkpoint_edit.setEnabled(not custom)
        self.model_type_combo.setEnabled(False)
        if custom:
            self.device_combo.setEnabled(False)  # the Python-built backend has its own device
            self.precision_combo.setEnabled(False)
            self.checkpoint_status.setText("a backend built in Python (use_segmenter)")
            return
        try:
            cls = get_backend_class(backend)
        except SegpromptError as exc:
            self.checkpoint_status.setText(f"unavailable: {exc}")
            return
        parameters = inspect.signature(cls.__init__).parameters
        self.device_combo.setEnabled("device" in parameters)
        self.precision_combo.setEnabled("precision" in parameters)
        uses_sam = "model_type" in parameters or "sam_model_type" in parameters
        self.model_type_combo.setEnabled(uses_sam)
        path = self.checkpoint_edit.text().strip()
        if path:
            weights = f"{path}: {'found' if Path(path).expanduser().exists() else 'MISSING'}"
        elif uses_sam:
            info = official_checkpoint(self.model_type_combo.currentText())
            state = "in cache" if info.path.is_file() else f"not downloaded (needs internet, or put it at {info.path})"
            weights = f"{info.filename}: {state}"
        elif issubclass(cls, SamFamilySegmenter):
            hub_id = cls.hub_ids[self.variant_combo.currentText() or cls.default_variant]
            folder = local_model_dir(hub_id)
            state = "in cache" if folder.is_dir() else f"not here (needs internet, or `hf download {hub_id} --local-dir {folder}`)"
            weights = f"{hub_id}: {state}"
        else:
            weights = "its default weights"
        self.checkpoint_status.setText(f"accepts {', '.join(sorted(cls.accepts))}; {weights}")

    def _browse_checkpoint(self) -> None:
        if self.model_type_combo.isEnabled():  # the backend takes SAM weights: a file
            path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", "", "PyTorch checkpoint (*.pth *.pt)")
        else:
            path = QFileDialog.getExistingDirectory(self, "model folder")
        if path:
            self.checkpoint_edit.setText(path)

    def _bind_keys(self) -> None:
        actions = {
            "T": self.toggle_include,
            "N": lambda: self.cycle_candidate(1),
            "Shift-N": lambda: self.cycle_candidate(-1),
            "K": self.accept,
            "U": self.undo,
            "Shift-U": self.redo,
            "Q": self.clear_prompts,
        }
        for key, action in actions.items():
            reported = self._report(action)
            self.viewer.bind_key(key, lambda _viewer, run=reported: run(), overwrite=True)
        # A closed widget must not leave keys calling into a deleted Qt object.
        self.destroyed.connect(functools.partial(_unbind_keys, self.viewer, tuple(actions)))

    @staticmethod
    def _report(action: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a UI action so a user mistake becomes a napari notification, not a traceback."""

        @functools.wraps(action)
        def run(*_: Any) -> None:
            try:
                action()
            except SegpromptError as exc:
                show_error(str(exc))

        return run

    # -- model and embedding -----------------------------------------------

    def use_segmenter(self, segmenter: Segmenter) -> None:
        """Use an already built backend (e.g. from the napari console) for the next embedding."""
        label = f"{_CUSTOM}{segmenter.name}"
        if self.backend_combo.findText(label) < 0:
            self.backend_combo.addItem(label)
        self.backend_combo.setCurrentText(label)
        self.checkpoint_edit.clear()
        self._segmenters[(label, self.model_type_combo.currentText(), "", "", "")] = segmenter

    def _segmenter_factory(self) -> tuple[SegmenterKey, Callable[[], Segmenter]]:
        """The cache key of the chosen backend and a function building it (run in the worker).

        The weights field is a SAM checkpoint when it names a file and a model
        folder (transformers backends) when it names a folder.
        """
        backend, model_type = self.backend_combo.currentText(), self.model_type_combo.currentText()
        variant = self.variant_combo.currentText() if self.variant_combo.isEnabled() else None
        path = self.checkpoint_edit.text().strip()
        device = self.device_combo.currentText() if self.device_combo.isEnabled() else ""
        precision = self.precision_combo.currentText() if self.precision_combo.isEnabled() else ""
        key = (backend, variant or model_type, path, device, precision)
        if key in self._segmenters:
            return key, functools.partial(self._segmenters.__getitem__, key)
        options: dict[str, Any] = {"model_type": model_type, "variant": variant, "device": device or None,
                                   "precision": precision or None}
        if path:
            folder = Path(path).expanduser()
            options["model_dir" if folder.is_dir() else "checkpoint"] = str(folder.resolve())
        used = backend_options(backend)
        self._backend_options[key] = {name: value for name, value in options.items() if value is not None and name in used}
        return key, functools.partial(create_from_options, backend, **options)

    def compute_embedding(self) -> None:
        """Embed the chosen image in a background worker; the session starts when it returns."""
        name = self.image_combo.currentText()
        if name not in self.viewer.layers:
            raise SegpromptError("no image layer: open an image (File > Open Sample > segprompt for a demo)")
        layer = self.viewer.layers[name]
        if layer.multiscale or layer.ndim != 2:
            raise SegpromptError(
                f"image layer {name!r}: segprompt annotates single 2-D images (RGB or grayscale); "
                f"this layer has {layer.ndim} spatial dimensions{' and is multiscale' if layer.multiscale else ''}"
            )
        key, make_segmenter = self._segmenter_factory()
        tiling = self.tiling_fields.options()

        def embed(progress: ProgressCallback) -> tuple[Segmenter, Segmenter, Embedding]:
            backend = make_segmenter()  # loads weights: slow, so off the GUI thread too
            segmenter = TiledSegmenter(backend, **tiling) if tiling else backend
            image = np.asarray(layer.data)  # lazy (dask, zarr) layers are read here as well
            return backend, segmenter, self.cache.embed(segmenter, image, progress)

        self._start_job(embed, functools.partial(self._on_embedded, layer, key, tiling), f"embedding {name!r} with {key[0]}")

    def _start_job(
        self,
        job: Callable[[ProgressCallback], Any],
        on_result: Callable[[Any], None],
        message: str,
        memory_advice: str = MEMORY_ADVICE,
    ) -> None:
        """Run one background job at a time, with the progress bar; failures become notifications.

        ``memory_advice`` is what the job's out-of-memory notification says to lower.
        """
        if self.worker is not None:
            raise SegpromptError("a background job is still running; wait for it to finish")
        self.embed_button.setEnabled(False)
        self.classes_button.setEnabled(False)
        self.status_label.setText(f"{message} …")
        self.progress_bar.setRange(0, 0)
        self.worker = _in_background(job, self._relay, memory_advice)
        self.worker.returned.connect(functools.partial(self._on_job_returned, on_result))
        self.worker.finished.connect(self._on_worker_finished)
        self.worker.start()

    def _on_job_returned(self, on_result: Callable[[Any], None], result: Any) -> None:
        if isinstance(result, _Failed):
            self.status_label.setText("failed: " + result.message)
            self.progress_bar.setValue(0)
            show_error(result.message)
            return
        self.progress_bar.setValue(PROGRESS_STEPS)
        on_result(result)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.progress_bar.setRange(0, PROGRESS_STEPS)
            self.progress_bar.setValue(min(PROGRESS_STEPS, PROGRESS_STEPS * done // total))
            self.progress_bar.setFormat(f"{message} %p%")
        else:  # unknown total: a busy bar
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat(message)

    def _on_worker_finished(self) -> None:
        self.worker = None
        self.embed_button.setEnabled(True)
        self.classes_button.setEnabled(True)
        self.progress_bar.setRange(0, PROGRESS_STEPS)

    def _on_embedded(
        self, layer: Image, key: SegmenterKey, tiling: dict[str, Any], result: tuple[Segmenter, Segmenter, Embedding]
    ) -> None:
        backend, segmenter, embedding = result
        self._segmenters[key] = backend  # untiled: another tiling reuses the loaded weights
        self.start_session(layer, segmenter, embedding, {**self._backend_options.get(key, {}), **tiling})

    def start_session(
        self, layer: Image, segmenter: Segmenter, embedding: Embedding, backend_options: dict[str, Any] | None = None
    ) -> None:
        """Annotate ``layer`` with ``segmenter`` (built from ``backend_options``); prompt layers are (re)created empty."""
        self.image_layer = layer
        self.objects_layer = self._objects_layer_for(layer, embedding.image_hw)
        self.session = AnnotationSession(segmenter, embedding, labels=self.objects_layer.data, backend_options=backend_options)
        self.session.image_path = layer.source.path  # the file it was opened from, for replay (None: made in Python)
        self._ensure_prompt_layers(embedding.image_hw)
        self.clear_prompts()
        height, width = embedding.image_hw
        self.status_label.setText(f"{layer.name}: {width}x{height}, {segmenter.name} ({segmenter.model_id}); accepts "
                                  f"{', '.join(sorted(segmenter.accepts))}")
        self.embedding_ready.emit()

    # -- layers --------------------------------------------------------------

    def _objects_layer_for(self, layer: Image, image_hw: tuple[int, int]) -> Labels:
        name = f"{layer.name} objects"
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(existing, Labels) and existing.data.shape == image_hw and existing.data.dtype == np.int32:
            return existing
        if existing is not None:
            self.viewer.layers.remove(existing)
        return self.viewer.add_labels(np.zeros(image_hw, np.int32), name=name, opacity=0.5, colormap=_overlay_colormap())

    def _ensure_prompt_layers(self, image_hw: tuple[int, int]) -> None:
        layers = self.viewer.layers
        if self.preview_layer is None or self.preview_layer not in layers:
            self.preview_layer = self.viewer.add_labels(
                np.zeros(image_hw, np.uint8), name="segprompt preview", opacity=0.5, colormap=PREVIEW_COLOURMAP
            )
            self._preview_shows_instances = False
        else:
            self.preview_layer.data = np.zeros(image_hw, np.uint8)
        if self.boxes_layer is None or self.boxes_layer not in layers:
            self.boxes_layer = self.viewer.add_shapes(
                ndim=2, name="segprompt boxes", edge_color="yellow", face_color="transparent", edge_width=2
            )
            self.boxes_layer.events.data.connect(self.schedule_preview)
        if self.points_layer is None or self.points_layer not in layers:
            self.points_layer = self.viewer.add_points(
                ndim=2,
                name="segprompt points",
                features={"include": np.zeros(0, bool)},
                face_color="include",
                face_color_cycle=POINT_COLOURS,
                border_color="white",
                size=max(6, round(max(image_hw) / 80)),
            )
            self.points_layer.events.data.connect(self.schedule_preview)
            self._show_include()
        accepts_exemplars = self.session is not None and "exemplars" in self.session.segmenter.accepts
        if accepts_exemplars and (self.exemplars_layer is None or self.exemplars_layer not in layers):
            # Example boxes of the concept (SAM 3): positive or negative by the include toggle, like points.
            self.exemplars_layer = self.viewer.add_shapes(
                ndim=2,
                name="segprompt exemplars",
                features={"positive": np.zeros(0, bool)},
                face_color="transparent",
                edge_width=2,
            )
            self.exemplars_layer.events.data.connect(self.schedule_preview)
            self._show_include()
        self.points_layer.mode = "add"
        self.viewer.layers.selection.active = self.points_layer

    def toggle_include(self) -> None:
        """Switch the label given to the next points between include (1) and exclude (0)."""
        self._include = not self._include
        self._show_include()

    def _show_include(self) -> None:
        self.include_button.setText(f"{'include' if self._include else 'exclude'} [T]")
        self.include_button.setStyleSheet(f"color: {POINT_COLOURS[self._include]}")
        if self.points_layer is not None:
            self.points_layer.feature_defaults["include"] = self._include
        if self.exemplars_layer is not None:
            # napari's Shapes colour cycles map categories in order of appearance, so the colour is set directly
            # (with no shape selected, so it only applies to the next ones).
            self.exemplars_layer.selected_data = set()
            self.exemplars_layer.feature_defaults["positive"] = self._include
            self.exemplars_layer.current_edge_color = POINT_COLOURS[self._include]

    # -- prompts and preview -----------------------------------------------

    def current_prompt(self) -> Prompt | None:
        """The prompt the layers and fields describe, in segprompt ``(x, y)`` pixels; ``None`` if empty.

        Only the last drawn box is used (a segprompt prompt holds one box);
        every shape of the exemplars layer is an exemplar box, positive or
        negative as drawn.
        """
        if self.session is None:
            return None
        parts: dict[str, Any] = {}
        if self.points_layer is not None and len(self.points_layer.data):
            labels = self.points_layer.features["include"].to_numpy(dtype=np.int64)  # 1 include, 0 exclude
            parts["points"] = PointsPrompt(rowcol_to_xy(self.points_layer.data), labels)
        if self.boxes_layer is not None and len(self.boxes_layer.data):
            parts["box"] = box_from_vertices(self.boxes_layer.data[-1], self.session.image_hw)
        exemplars = self.exemplars_layer
        if exemplars is not None and exemplars in self.viewer.layers and len(exemplars.data):
            boxes = [box_from_vertices(vertices, self.session.image_hw).as_array() for vertices in exemplars.data]
            labels = exemplars.features["positive"].to_numpy(dtype=np.int64)  # 1 positive, 0 negative
            parts["exemplars"] = Exemplars(np.array(boxes), labels)
        if self.text_edit.text().strip():
            parts["text"] = Text(self.text_edit.text())
        reference_image, reference_mask = self.reference_image_combo.currentText(), self.reference_mask_combo.currentText()
        if reference_image != _NONE and reference_mask != _NONE:
            layers = self.viewer.layers
            parts["reference"] = VisualReference(np.asarray(layers[reference_image].data), np.asarray(layers[reference_mask].data))
        return Prompt(**parts) if parts else None

    def schedule_preview(self, *_: Any) -> None:
        """Re-run the decoder once the edits pause for :data:`DEBOUNCE_MS`."""
        if self.session is not None:
            self._debounce.start()

    def refresh_preview(self) -> None:
        """Answer the current prompt in a background worker; the preview layer updates when it returns.

        Requests made while the decoder runs are coalesced: when it returns,
        its answer is dropped if the prompt changed meanwhile and the newest
        prompt is answered next, so a slow backend never queues up clicks and
        never freezes the viewer.
        """
        if self.session is None:
            return
        self._preview_request += 1
        if self._preview_worker is None:
            self._start_preview()

    def _start_preview(self) -> None:
        session, request = self.session, self._preview_request
        try:
            prompt = self.current_prompt()
        except SegpromptError:
            self._preview_failed(session, request)
            raise
        if prompt is None:
            self._preview_failed(session, request)
            return
        self._preview_worker = _in_background(lambda _progress: session.predict(prompt), self._relay)
        self._preview_worker.returned.connect(functools.partial(self._on_preview, session, prompt, request))
        self._preview_worker.finished.connect(self._on_preview_finished)
        self._preview_worker.start()

    def _on_preview(self, session: AnnotationSession, prompt: Prompt, request: int, result: Any) -> None:
        if session is not self.session or request != self._preview_request:
            return  # the prompt changed while the decoder ran; the newest one is answered next
        if isinstance(result, _Failed):
            self._preview_failed(session, request)
            show_error(result.message)
            return
        self._preview_answered = request
        session.set_preview(prompt, result)
        self._show_preview()
        if self._accept_when_ready:
            self._report(self.accept)()

    def _on_preview_finished(self) -> None:
        self._preview_worker = None
        if self.session is not None and self._preview_answered != self._preview_request:
            self._report(self._start_preview)()

    def _preview_failed(self, session: AnnotationSession, request: int) -> None:
        """Clear the preview so a stale mask is never accepted; drop a waiting accept."""
        self._preview_answered = request
        self._accept_when_ready = False
        session.clear()
        self._show_preview()

    def preview_pending(self) -> bool:
        """Whether the preview does not yet answer the last prompt edit (debounce or decoder running)."""
        return self._debounce.isActive() or self._preview_answered != self._preview_request

    def cycle_candidate(self, step: int = 1) -> None:
        """Show the candidate ``step`` ranks away (by score) in the preview layer."""
        if self.session is not None:
            self.session.cycle(step)
            self._show_preview()

    def _show_preview(self) -> None:
        """Show the chosen candidate (yellow), or every instance of a concept answer (one colour each)."""
        session = self.session
        mask = None if session is None else session.preview
        instances = None if session is None else session.instances
        if self.preview_layer is not None and session is not None:
            if (instances is not None) != self._preview_shows_instances:  # swap colourmaps only on a change of kind
                self._preview_shows_instances = instances is not None
                self.preview_layer.colormap = _overlay_colormap() if instances is not None else PREVIEW_COLOURMAP
            if instances is not None:
                self.preview_layer.data = instances.to_label_map()
            else:
                self.preview_layer.data = np.zeros(session.image_hw, np.uint8) if mask is None else mask.astype(np.uint8)
        if mask is None:
            self.candidate_label.setText("no preview")
        elif instances is not None:
            best = f", best score {instances.scores[0]:.3f}" if len(instances) else ""
            self.candidate_label.setText(f"{len(instances)} instances{best}; accept [K] adds each as its own object")
        else:
            method = f", {session.preview_method}" if session.preview_method else ""
            self.candidate_label.setText(
                f"candidate {session.candidate + 1}/{session.n_candidates}, score {session.preview_score:.3f}{method} "
                "[N / ⇧N]"
            )
        self.preview_updated.emit()

    def clear_prompts(self) -> None:
        """Remove every point and box and the preview (accepted objects stay)."""
        self._debounce.stop()
        self._preview_request += 1  # a running decoder's answer is now stale
        self._preview_answered = self._preview_request  # the empty preview answers the empty prompt
        self._accept_when_ready = False
        for layer in (self.points_layer, self.boxes_layer, self.exemplars_layer):
            if layer is not None and len(layer.data):
                with layer.events.data.blocker(self.schedule_preview):
                    layer.data = [] if isinstance(layer, Shapes) else np.zeros((0, 2))
        if self.session is not None:
            self.session.clear()
        self._show_preview()

    # -- semantic mode -----------------------------------------------------

    def class_prompts(self) -> dict[str, Text | VisualReference]:
        """Class name -> prompt: the listed names as text, else one reference per id of the reference mask."""
        names = [name.strip() for name in self.classes_edit.text().split(",") if name.strip()]
        if names:
            return {name: Text(name) for name in names}
        reference_image, reference_mask = self.reference_image_combo.currentText(), self.reference_mask_combo.currentText()
        if reference_image == _NONE or reference_mask == _NONE:
            raise SegpromptError("semantic mode: list class names, or pick a reference image and a reference mask")
        image = np.asarray(self.viewer.layers[reference_image].data)
        mask = np.asarray(self.viewer.layers[reference_mask].data)
        return {f"{reference_mask} {k}": VisualReference(image, mask == k) for k in np.unique(mask) if k != 0}

    def segment_classes(self) -> None:
        """Label every pixel with a class or background (Show-or-Tell merge), in a background worker.

        The result goes to the Labels layer ``"<image> classes"``; its
        ``features`` table names each label.
        """
        session = self._require_session()
        classes = self.class_prompts()

        def label(progress: ProgressCallback) -> SemanticSegmentation:
            embedding = session.embedding
            return segment_classes(embedding.image, classes, session.segmenter, embedding=embedding, progress=progress)

        self._start_job(label, self._on_classes, f"labelling {len(classes)} classes")

    def _on_classes(self, result: SemanticSegmentation) -> None:
        name = f"{self.image_layer.name} classes"
        features = {"index": np.arange(len(result.class_names)), "class": list(result.class_names)}
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_labels(result.labels, name=name, features=features, opacity=0.5, colormap=_overlay_colormap())
        self.status_label.setText(f"labelled {', '.join(result.class_names[1:])}")
        self.classes_ready.emit()

    # -- objects -----------------------------------------------------------

    def _require_session(self) -> AnnotationSession:
        if self.session is None:
            raise SegpromptError("no embedding yet: pick an image and press 'compute embedding'")
        return self.session

    def accept(self) -> int | None:
        """Write the preview into the objects layer as the next id and clear the prompts; return the id.

        While the preview of the last edit is still being computed the accept
        waits for it (returns ``None`` now; :attr:`objects_changed` fires
        later), so it always takes the mask of what was clicked last.
        """
        session = self._require_session()
        if self.preview_pending():
            self._accept_when_ready = True
            if self._debounce.isActive():
                self._debounce.stop()
                self.refresh_preview()
            return None
        self._accept_when_ready = False
        label = session.accept(self.objects_panel.new_class_name())
        self._objects_changed()
        self.clear_prompts()
        return label

    def undo(self) -> int | None:
        """Take the last edit back (accept, rename, delete, re-prompt, ...); return its (first) id, ``None`` if none."""
        label = self._require_session().undo()
        self._objects_changed()
        return label

    def redo(self) -> int | None:
        """Do the last undone edit again; return its (first) id (``None`` when nothing to redo)."""
        label = self._require_session().redo()
        self._objects_changed()
        return label

    def _objects_changed(self) -> None:
        if self.objects_layer is not None:
            self.objects_layer.refresh()
        self.objects_changed.emit()

    def save_annotations(self, labels_path: str | os.PathLike) -> Path:
        """Save the objects (PNG/TIFF) and the session (``<stem>.session.json``); return the session file's path."""
        prompts = self._require_session().save(labels_path)
        show_info(f"saved {len(self.session.objects)} objects to {labels_path} and {prompts}")
        return prompts

    def load_annotations(self, labels_path: str | os.PathLike) -> None:
        """Replace the objects by a saved label map (and its session file when present)."""
        self._require_session().load(labels_path)
        self._objects_changed()
        self._show_preview()

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "save objects", "", "labels (*.tif *.tiff *.png)")
        if path:
            self.save_annotations(path)

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "load objects", "", "labels (*.tif *.tiff *.png)")
        if path:
            self.load_annotations(path)


def _unbind_keys(viewer: "napari.viewer.Viewer", keys: tuple[str, ...], *_: Any) -> None:
    for key in keys:
        viewer.bind_key(key, None)


def _overlay_colormap() -> CyclicLabelColormap:
    """Label ``k`` in ``OVERLAY_COLOURS[(k - 1) % 10]``, as :func:`segprompt.io.overlay` draws it, 0 transparent.

    napari's default first label colour is a dark brown that vanishes on many
    photographs (the coffee cup sample among them).
    """
    rgba = np.hstack([OVERLAY_COLOURS / 255.0, np.ones((len(OVERLAY_COLOURS), 1))])
    return CyclicLabelColormap(colors=np.vstack([[0.0, 0.0, 0.0, 0.0], rgba]))
