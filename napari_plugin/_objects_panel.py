"""Whole-image annotation in the dock widget: segment everything, refine a labels layer, the object table, export.

A thin Qt layer over :class:`segprompt.annotation.AnnotationSession` (the
widget's session); every edit is one session call, so undo / redo (the
widget's ``U`` / ``Shift-U``) take back renames, deletions, re-prompts,
refinements, imports and segment-everything like accepts. Slow work
(everything, refinement) runs in the widget's background worker with its
progress bar.

The table has one row per object: id, class (editable: typing a new name
renames the object), score, area and box (measured on the label map), how it
was made and how many prompts made it. Selecting a row selects that label in
the objects layer (its paint label), so the brush fixes that object.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from segprompt.annotation_objects import ObjectRow
from segprompt.annotation_outputs import write_outputs
from segprompt.errors import SegpromptError
from segprompt.everything import everything_backends, settings_from_strings, settings_help
from segprompt.export import DEFAULT_CLASS
from segprompt.progress import ProgressCallback

if TYPE_CHECKING:
    from ._widget import SegpromptWidget

#: Table columns, in order.
COLUMNS = ("id", "class", "score", "area", "box", "source", "prompts")
#: Header tooltips.
COLUMN_HELP = {
    "class": "double-click to rename",
    "score": "the backend's score of the mask (empty: imported or painted)",
    "area": "pixels in the objects layer now",
    "box": "x0, y0, x1, y1 in image pixels (x = column; x1, y1 exclusive)",
    "source": "prompt, everything, refine, import, or manual (painted)",
    "prompts": "how many prompts made it (re-prompts add one)",
}
CLASS_COLUMN = COLUMNS.index("class")
#: A paint stroke refreshes the table once the strokes pause for this long.
PAINT_REFRESH_MS = 300
_NONE = "(none)"


class ObjectsPanel(QGroupBox):
    """The "objects" part of :class:`~napari_plugin._widget.SegpromptWidget` for whole images.

    Args:
        widget: the dock widget whose session, worker and layers it uses.
    """

    def __init__(self, widget: "SegpromptWidget") -> None:
        super().__init__("whole image")
        self.widget = widget
        self._painted = QTimer(self)
        self._painted.setSingleShot(True)
        self._painted.setInterval(PAINT_REFRESH_MS)
        self._painted.timeout.connect(self.refresh)
        self._watched: Labels | None = None
        self._build()
        widget.objects_changed.connect(self.refresh)
        widget.embedding_ready.connect(self._on_session)
        for event in (widget.viewer.layers.events.inserted, widget.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # -- UI ------------------------------------------------------------------

    def _build(self) -> None:
        report = self.widget._report
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText(f"class of new objects (default {DEFAULT_CLASS})")
        form.addRow("class", self.class_edit)
        self.settings_edit = QLineEdit()
        self.settings_edit.setPlaceholderText("generator settings, e.g. h=4, min_area=20")
        self.everything_button = QPushButton("segment everything")
        self.everything_button.clicked.connect(report(self.segment_everything))
        form.addRow("settings", self.settings_edit)
        form.addRow(self.everything_button)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("a Labels layer to import as objects (ids kept; classes from its 'class' feature)")
        import_button = QPushButton("import")
        import_button.clicked.connect(report(self.import_layer))
        row = QHBoxLayout()
        row.addWidget(self.labels_combo, 1)
        row.addWidget(import_button)
        form.addRow("labels", row)
        layout.addLayout(form)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, name in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(column).setToolTip(COLUMN_HELP.get(name, ""))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(160)
        self.table.itemChanged.connect(report_item(report, self._on_item_changed))
        self.table.itemSelectionChanged.connect(self._on_selection)
        layout.addWidget(self.table)

        for buttons in (
            (("name selected", self.name_selected), ("delete selected", self.delete_selected),
             ("re-prompt selected", self.reprompt_selected)),
            (("refine selected", lambda: self.refine(self.selected_labels())), ("refine all", lambda: self.refine(None)),
             ("export…", self._export_dialog)),
        ):
            row = QHBoxLayout()
            for text, action in buttons:
                button = QPushButton(text)
                button.clicked.connect(report(action))
                row.addWidget(button)
            layout.addLayout(row)

    def _on_session(self) -> None:
        """A new session: follow paint strokes on its objects layer, offer the backend's generator settings."""
        layer = self.widget.objects_layer
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_paint)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_paint)
        backend = self.widget.session.segmenter.name if self.widget.session is not None else ""
        can = backend in everything_backends()
        self.everything_button.setEnabled(can)
        self.everything_button.setToolTip(
            f"settings: {settings_help(backend)}" if can else
            f"{backend} has no everything generator; these have: {', '.join(everything_backends())}"
        )
        self._refresh_layers()
        self.refresh()

    def _on_paint(self, *_: Any) -> None:
        self._painted.start()

    def _refresh_layers(self, *_: Any) -> None:
        own = (self.widget.objects_layer, self.widget.preview_layer)
        names = [layer.name for layer in self.widget.viewer.layers if isinstance(layer, Labels) and layer not in own]
        current = self.labels_combo.currentText()
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems([_NONE, *names])
        if current in names:
            self.labels_combo.setCurrentText(current)
        self.labels_combo.blockSignals(False)

    # -- the table -----------------------------------------------------------

    def refresh(self) -> None:
        """Show the session's objects (areas and boxes measured now); keep the selection; name ids in the layer."""
        session = self.widget.session
        rows = [] if session is None else session.rows()
        selected = set(self.selected_labels())
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate(_cells(row)):
                item = QTableWidgetItem(text)
                if column != CLASS_COLUMN:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if column in (0, 2, 3, 6):
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                self.table.setItem(index, column, item)
        self.table.clearSelection()
        for index, row in enumerate(rows):
            if row.label in selected:
                self.table.selectRow(index)
        self.table.blockSignals(False)
        layer = self.widget.objects_layer
        if layer is not None:  # napari shows a hovered label's class in the status bar
            layer.features = {"index": [0] + [r.label for r in rows], "class": ["background"] + [r.class_name for r in rows]}

    def selected_labels(self) -> list[int]:
        """Ids of the selected rows, in table order."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [int(self.table.item(row, 0).text()) for row in rows if self.table.item(row, 0) is not None]

    def select(self, labels: list[int]) -> None:
        """Select the rows of ``labels``."""
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row in range(self.table.rowCount()):
            if int(self.table.item(row, 0).text()) in labels:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    def _on_selection(self) -> None:
        labels = self.selected_labels()
        if labels and self.widget.objects_layer is not None:
            self.widget.objects_layer.selected_label = labels[0]

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        """Typing a class name in the table renames that object."""
        if item.column() != CLASS_COLUMN:
            return
        label = int(self.table.item(item.row(), 0).text())
        try:
            self._session().rename([label], item.text())
        finally:
            self._edited()

    # -- actions ---------------------------------------------------------------

    def _session(self):
        return self.widget._require_session()

    def _edited(self) -> None:
        self.widget._objects_changed()

    def new_class_name(self) -> str | None:
        """The class typed for new objects, or ``None`` (the default)."""
        return self.class_edit.text().strip() or None

    def _require_selection(self, what: str) -> list[int]:
        labels = self.selected_labels()
        if not labels:
            raise SegpromptError(f"{what}: select objects in the table first")
        return labels

    def name_selected(self) -> None:
        """Give the selected objects the class typed in the class field."""
        name = self.new_class_name()
        if name is None:
            raise SegpromptError("name selected: type the class name in the class field first")
        self._session().rename(self._require_selection("name selected"), name)
        self._edited()

    def delete_selected(self) -> None:
        self._session().delete(self._require_selection("delete"))
        self._edited()

    def reprompt_selected(self) -> None:
        """Replace the selected object's mask by the preview (id and class kept)."""
        labels = self._require_selection("re-prompt")
        if len(labels) != 1:
            raise SegpromptError(f"re-prompt: select one object, not {len(labels)}")
        if self.widget.preview_pending():
            raise SegpromptError("re-prompt: the preview is still being computed; try again in a moment")
        self._session().reprompt(labels[0])
        self._edited()
        self.widget.clear_prompts()

    def import_layer(self) -> None:
        """Add the chosen Labels layer's objects (ids kept; classes from its ``class`` feature)."""
        name = self.labels_combo.currentText()
        if name in ("", _NONE) or name not in self.widget.viewer.layers:
            raise SegpromptError("import: pick a Labels layer (open a label image first)")
        layer = self.widget.viewer.layers[name]
        added = self._session().import_labels(np.asarray(layer.data), layer_class_names(layer), name)
        self._edited()
        self.select(added)

    def segment_everything(self) -> None:
        """Every object the backend's generator finds, in the background; added on free pixels as one step."""
        session = self._session()
        backend = session.segmenter.name
        settings = settings_from_strings(backend, _rejoin_tuples(self.settings_edit.text()))
        text = self.widget.text_edit.text().strip()
        if hasattr(settings, "text") and not settings.text and text:  # sam3: the concept typed in the text field
            settings = dataclasses.replace(settings, text=text)
        class_name = self.new_class_name()

        def find(progress: ProgressCallback):
            return session.find_everything(settings, progress)

        def add(instances) -> None:
            if session is not self.widget.session:
                return
            added = session.accept_everything(instances, settings, class_name)
            self._edited()
            self.widget.status_label.setText(f"segment everything: {len(added)} objects ({backend})")

        self.widget._start_job(
            find, add, f"segment everything ({backend})",
            memory_advice="choose precision bf16, lower the generator's batch or tile settings, or use a smaller image",
        )

    def refine(self, labels: list[int] | None) -> None:
        """Refine objects (``None``: all) with their own box and mask as prompts, in the background; one step."""
        session = self._session()
        if labels is not None and not labels:
            raise SegpromptError("refine selected: select objects in the table first")
        snapshot, ids = session.refinement_targets(labels)

        def predict(progress: ProgressCallback):
            return session.predict_refinements(snapshot, ids, progress)

        def apply(answers) -> None:
            if session is not self.widget.session:
                return
            changed = session.apply_answers(answers, "refine")
            self._edited()
            self.widget.status_label.setText(f"refined {len(changed)} of {len(ids)} objects")

        self.widget._start_job(predict, apply, f"refining {len(ids)} objects")

    def export(self, folder: str | Path) -> dict[str, Path]:
        """Write labels.tif, coco.json, objects.csv, overlay.png and labels.session.json to ``folder``."""
        session = self._session()
        layer = self.widget.image_layer
        source = getattr(getattr(layer, "source", None), "path", None)
        name = Path(source).name if source else f"{layer.name}.png"
        paths = write_outputs(folder, session, name)
        show_info(f"exported {len(session.objects)} objects to {folder}")
        return paths

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "export objects to a folder")
        if folder:
            self.export(folder)


def layer_class_names(layer: Labels) -> dict[int, str]:
    """``{id: class}`` from a Labels layer's features: a ``class`` (or ``class_name``) column, rows by ``index``."""
    features = layer.features
    column = next((name for name in ("class", "class_name") if name in features.columns), None)
    if column is None:
        return {}
    ids = features["index"] if "index" in features.columns else range(len(features))
    return {int(i): str(name) for i, name in zip(ids, features[column]) if int(i) != 0}


def _rejoin_tuples(text: str) -> list[str]:
    """``"h=4, ridge_sigmas=1,2"`` -> ``["h=4", "ridge_sigmas=1,2"]``: a comma starts a new setting only before ``NAME=``."""
    assignments: list[str] = []
    for part in text.split(","):
        if "=" in part or not assignments:
            assignments.append(part.strip())
        else:
            assignments[-1] += "," + part.strip()
    return [a for a in assignments if a]


def _cells(row: ObjectRow) -> list[str]:
    score = "" if math.isnan(row.score) else f"{row.score:.3f}"
    box = "" if row.box is None else ", ".join(map(str, row.box))
    return [str(row.label), row.class_name, score, str(row.area), box, row.source, str(row.prompts)]


def report_item(report: Callable, action: Callable[[QTableWidgetItem], None]) -> Callable[[QTableWidgetItem], None]:
    """``report`` (user mistakes as notifications) for a slot that takes the changed item."""

    def run(item: QTableWidgetItem) -> None:
        report(functools.partial(action, item))()

    return run
