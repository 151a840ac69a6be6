"""The dock widget's whole-image panel: the object table (rename, delete, re-prompt, undo/redo), segment
everything and refinement in the background worker, importing a Labels layer, export, and a screenshot of the table.

Headless Qt through pytest-qt with real napari layers (an X display: the ``display`` fixture, as in
``test_napari_widget.py``), a random-init tiny SAM and the classical backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtWidgets import QPushButton
from skimage import data

from segprompt.backends import create
from segprompt.everything.classical import classical_labels
from segprompt.io import read_image, write_image
from segprompt.prompts import Box, MaskPrompt, Prompt
from segprompt.session_file import read_session_record

from napari_plugin._objects_panel import COLUMNS, layer_class_names
from napari_plugin._widget import SegpromptWidget

IMAGE = data.coffee()[::5, ::5]  # (80, 120, 3): non-square
COINS = data.coins()[:120, :200]
ARTIFACTS = Path(os.environ.get("SEGPROMPT_ARTIFACTS", Path(__file__).parent / "artifacts"))
WAIT_MS = 60_000

pytestmark = pytest.mark.usefixtures("display", "one_torch_thread")


@pytest.fixture(scope="module")
def sam_and_embedding(tiny_sam):
    return tiny_sam, tiny_sam.embed(IMAGE)


def _docked(make_napari_viewer, image, name, segmenter, embedding, **viewer_options):
    viewer = make_napari_viewer(**viewer_options)
    layer = viewer.add_image(image, name=name, rgb=image.ndim == 3)
    widget = SegpromptWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt")
    widget.start_session(layer, segmenter, embedding)
    return widget


@pytest.fixture
def widget(make_napari_viewer, sam_and_embedding):
    return _docked(make_napari_viewer, IMAGE, "coffee", *sam_and_embedding)


def button(widget, text: str) -> QPushButton:
    (found,) = [b for b in widget.objects_panel.findChildren(QPushButton) if b.text() == text]
    return found


def table_rows(widget) -> list[list[str]]:
    table = widget.objects_panel.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def accept_box(qtbot, widget, box: Box) -> None:
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[box.y0, box.x0], [box.y1, box.x1]]))  # (row, col)
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        widget.accept()


def snapshot(widget):
    return widget.objects_layer.data.copy(), table_rows(widget)


def test_table_rename_delete_reprompt_and_undo_redo(qtbot, widget, sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    panel = widget.objects_panel
    panel.class_edit.setText("cup")
    accept_box(qtbot, widget, Box(60, 0, 120, 50))
    panel.class_edit.clear()
    accept_box(qtbot, widget, Box(0, 30, 60, 80))
    rows = table_rows(widget)
    assert [r[:2] for r in rows] == [["1", "cup"], ["2", "object"]] and tuple(
        panel.table.horizontalHeaderItem(c).text() for c in range(len(COLUMNS))) == COLUMNS
    labels = widget.objects_layer.data
    assert rows[0][3] == str((labels == 1).sum()) and rows[0][4] == ", ".join(
        str(int(v)) for v in Box.from_mask(labels == 1).as_array())
    assert rows[1][5:] == ["prompt", "1"]
    assert list(widget.objects_layer.features["class"]) == ["background", "cup", "object"]
    states = [snapshot(widget)]

    panel.table.item(1, 1).setText("saucer")  # typing in the class cell renames
    assert widget.session.object(2).class_name == "saucer" and table_rows(widget)[1][1] == "saucer"
    states.append(snapshot(widget))

    panel.select([1, 2])
    assert panel.selected_labels() == [1, 2] and widget.objects_layer.selected_label == 1
    panel.class_edit.setText("dish")
    button(widget, "name selected").click()
    assert [r[1] for r in table_rows(widget)] == ["dish", "dish"]
    states.append(snapshot(widget))

    panel.select([1])
    button(widget, "delete selected").click()
    assert [r[0] for r in table_rows(widget)] == ["2"] and not (widget.objects_layer.data == 1).any()
    states.append(snapshot(widget))

    panel.select([2])
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[10.0, 0.0], [70.0, 100.0]]))
    qtbot.waitUntil(lambda: not widget.preview_pending(), timeout=WAIT_MS)
    new_mask = segmenter.predict(embedding, widget.session.prompt, multimask=False).best_mask
    button(widget, "re-prompt selected").click()
    np.testing.assert_array_equal(widget.objects_layer.data == 2, new_mask)
    assert table_rows(widget)[0][1] == "dish" and table_rows(widget)[0][6] == "2"  # class kept, a second prompt
    assert len(widget.boxes_layer.data) == 0
    states.append(snapshot(widget))

    for expected in reversed(states[:-1]):  # U takes back every table edit, in order
        widget.undo()
        np.testing.assert_array_equal(widget.objects_layer.data, expected[0])
        assert table_rows(widget) == expected[1]
    for expected in states[1:]:
        widget.redo()
        np.testing.assert_array_equal(widget.objects_layer.data, expected[0])
        assert table_rows(widget) == expected[1]


def test_user_mistakes_in_the_panel_are_notifications(qtbot, widget):
    from napari.utils.notifications import notification_manager

    before = len(notification_manager.records)
    button(widget, "delete selected").click()
    button(widget, "name selected").click()
    button(widget, "import").click()
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("select objects in the table first" in m for m in messages), messages
    assert any("type the class name" in m for m in messages), messages
    assert any("pick a Labels layer" in m for m in messages), messages


def test_everything_is_offered_only_by_backends_with_a_generator(make_napari_viewer, tiny_clipseg):
    clipseg = _docked(make_napari_viewer, IMAGE, "coffee", tiny_clipseg, tiny_clipseg.embed(IMAGE))
    everything = clipseg.objects_panel.everything_button
    assert not everything.isEnabled() and everything.toolTip().startswith("clipseg has no everything generator; these have")


def test_segment_everything_with_sam_runs_its_generator_in_the_worker(qtbot, widget, sam_and_embedding):
    from segprompt.annotation import AnnotationSession
    from segprompt.everything import everything_settings

    panel = widget.objects_panel
    assert panel.everything_button.isEnabled() and "points_per_side=32" in panel.everything_button.toolTip()
    panel.settings_edit.setText("points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0")
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        button(widget, "segment everything").click()
        assert widget.worker is not None  # off the GUI thread
    expected = AnnotationSession(*sam_and_embedding)
    expected.everything(everything_settings("sam", points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0))
    np.testing.assert_array_equal(widget.objects_layer.data, expected.labels)
    assert widget.objects_layer.data.any() and {r[5] for r in table_rows(widget)} == {"everything"}
    assert widget.session.history[-1]["backend"] == "sam"


def test_segment_everything_runs_in_the_worker_and_is_one_undo_step(qtbot, make_napari_viewer):
    classical = create("classical")
    widget = _docked(make_napari_viewer, COINS, "coins", classical, classical.embed(COINS))
    panel = widget.objects_panel
    assert panel.everything_button.isEnabled() and "min_area=8" in panel.everything_button.toolTip()
    panel.settings_edit.setText("h=4, ridge_sigmas=1,2")
    panel.class_edit.setText("coin")
    progress = []
    widget._relay.progressed.connect(lambda done, total, message: progress.append(message))
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        button(widget, "segment everything").click()
        assert widget.worker is not None  # off the GUI thread
    reference = classical_labels(COINS, panel_settings(widget))
    labels = widget.objects_layer.data
    np.testing.assert_array_equal(labels > 0, reference > 0)
    assert len(table_rows(widget)) == len(np.unique(reference)) - 1
    assert {r[1] for r in table_rows(widget)} == {"coin"} and {r[5] for r in table_rows(widget)} == {"everything"}
    assert any("classical everything" in m for m in progress), progress
    assert widget.session.history[-1]["settings"]["h"] == 4.0
    widget.undo()
    assert not widget.objects_layer.data.any() and not table_rows(widget)


def panel_settings(widget):
    from segprompt.everything import everything_settings

    return everything_settings("classical", **widget.session.history[-1]["settings"])


def test_a_labels_layer_is_imported_and_refined_keeping_ids_and_classes(qtbot, widget, sam_and_embedding, tmp_path):
    segmenter, embedding = sam_and_embedding
    mine = np.zeros((80, 120), np.int32)
    mine[5:40, 10:50], mine[45:75, 60:110] = 3, 8
    widget.viewer.add_labels(mine, name="mine", features={"index": [0, 3, 8], "class": ["bg", "cup", "saucer"]})
    assert layer_class_names(widget.viewer.layers["mine"]) == {3: "cup", 8: "saucer"}
    panel = widget.objects_panel
    panel.labels_combo.setCurrentText("mine")
    button(widget, "import").click()
    assert [r[:2] + [r[5]] for r in table_rows(widget)] == [["3", "cup", "import"], ["8", "saucer", "import"]]
    assert panel.selected_labels() == [3, 8]
    np.testing.assert_array_equal(widget.objects_layer.data, mine)

    panel.select([8])
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        button(widget, "refine selected").click()
    prompt = Prompt(box=Box.from_mask(mine == 8), mask=MaskPrompt(mine == 8))
    expected = segmenter.predict(embedding, prompt, multimask=False).best_mask & (mine != 3)
    np.testing.assert_array_equal(widget.objects_layer.data == 8, expected)
    np.testing.assert_array_equal(widget.objects_layer.data == 3, mine == 3)
    assert [r[:2] + [r[5]] for r in table_rows(widget)] == [["3", "cup", "import"], ["8", "saucer", "refine"]]
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        button(widget, "refine all").click()
    assert [r[5] for r in table_rows(widget)] == ["refine", "refine"]
    assert [r[1] for r in table_rows(widget)] == ["cup", "saucer"]

    paths = panel.export(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())
    record = read_session_record(paths["session"])
    assert [a["op"] for a in record["history"]] == ["import", "reprompt", "reprompt"]
    assert [o["class_name"] for o in record["objects"]] == ["cup", "saucer"]


def test_painting_shows_in_the_table_and_the_table_screenshot(qtbot, make_napari_viewer):
    """A hand-painted id appears as a 'manual' row; the screenshot of the panel is the CI artifact."""
    image = data.coffee()[::2, ::2]  # (200, 300, 3)
    classical = create("classical")
    widget = _docked(make_napari_viewer, image, "coffee", classical, classical.embed(image), show=True)
    widget.viewer.window._qt_window.resize(1200, 900)
    widget.objects_panel.class_edit.setText("cup")
    accept_box(qtbot, widget, Box(84, 6, 206, 146))
    widget.objects_panel.class_edit.setText("spoon")
    accept_box(qtbot, widget, Box(200, 90, 240, 170))
    widget.objects_panel.class_edit.clear()
    accept_box(qtbot, widget, Box(20, 100, 120, 190))  # the saucer's left
    layer = widget.objects_layer
    layer.paint((190, 20), 9)  # napari's own brush: a new id painted by hand
    qtbot.waitUntil(lambda: len(table_rows(widget)) == 4, timeout=WAIT_MS)
    assert table_rows(widget)[3][:2] == ["9", "object"] and table_rows(widget)[3][5] == "manual"
    widget.objects_panel.select([2])

    qtbot.wait(200)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "napari_objects_table.png"
    assert widget.objects_panel.grab().save(str(path))
    shot = read_image(path)
    assert shot.shape[0] > 200 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 20  # text was drawn, not a blank box
    write_image(ARTIFACTS / "napari_objects_window.png", widget.viewer.screenshot(canvas_only=False, flash=False)[..., :3])
