"""The napari dock widget, driven through real napari layers and a real random-init tiny SAM.

napari needs OpenGL to add any layer; Qt's offscreen platform has none, so
these tests need an X display (pytest-xvfb starts Xvfb when it is installed,
or run under ``xvfb-run -a``): skipped without one, failed under ``CI=true``
(the ``display`` fixture).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from segprompt.backends import create
from segprompt.io import read_mask, write_image
from segprompt.prompts import Box
from segprompt.semantic import segment_classes
from segprompt.testing import tiny_clipseg_dir

from napari.utils.notifications import notification_manager

from napari_plugin._widget import KEY_BINDINGS, POINT_COLOURS, SegpromptWidget

IMAGE = data.coffee()[::5, ::5]  # (80, 120, 3): non-square
ARTIFACTS = Path(os.environ.get("SEGPROMPT_ARTIFACTS", Path(__file__).parent / "artifacts"))
WAIT_MS = 60_000


pytestmark = pytest.mark.usefixtures("display", "one_torch_thread")


@pytest.fixture(scope="module")
def sam_and_embedding(tiny_sam):
    return tiny_sam, tiny_sam.embed(IMAGE)


@pytest.fixture
def widget(make_napari_viewer, sam_and_embedding):
    """A docked widget with a session already started on the coffee crop (embedding precomputed)."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt")
    widget.start_session(layer, *sam_and_embedding)
    return widget


def press(widget, key: str) -> None:
    """Run the viewer's binding of ``key`` as napari does on a key press."""
    from napari.utils.key_bindings import coerce_keybinding

    widget.viewer.keymap[coerce_keybinding(key)](widget.viewer)


def add_point(qtbot, widget, row: float, col: float) -> None:
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.points_layer.add([[row, col]])


def test_points_and_boxes_give_previews(qtbot, widget, sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    add_point(qtbot, widget, row=20, col=100)  # only valid as (x=100, y=20) in a 120 x 80 image
    prompt = widget.session.prompt
    np.testing.assert_array_equal(prompt.points.xy, [[100.0, 20.0]])
    np.testing.assert_array_equal(prompt.points.labels, [1])
    expected = segmenter.predict(embedding, prompt, multimask=True).best_mask
    np.testing.assert_array_equal(widget.preview_layer.data, expected.astype(np.uint8))
    assert "candidate 1/3" in widget.candidate_label.text()
    widget.cycle_candidate(1)
    assert widget.session.candidate == 1
    np.testing.assert_array_equal(widget.preview_layer.data, widget.session.preview.astype(np.uint8))

    widget.toggle_include()
    assert widget.include_button.text().startswith("exclude")
    add_point(qtbot, widget, row=70, col=10)
    np.testing.assert_array_equal(widget.session.prompt.points.labels, [1, 0])
    np.testing.assert_array_equal(widget.session.prompt.points.xy, [[100.0, 20.0], [10.0, 70.0]])
    np.testing.assert_allclose(widget.points_layer.face_color[:, :3], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # lime, red
    assert POINT_COLOURS == {True: "lime", False: "red"}

    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[5.0, 40.0], [60.0, 110.0]]))  # (row, col) corners
    assert widget.session.prompt.box == Box(40.0, 5.0, 110.0, 60.0)
    assert len(widget.session.prompt.points) == 2
    expected = segmenter.predict(embedding, widget.session.prompt, multimask=False).best_mask
    np.testing.assert_array_equal(widget.preview_layer.data, expected.astype(np.uint8))


def test_preview_requests_coalesce_to_the_newest_prompt(qtbot, widget, sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    widget.points_layer.add([[20.0, 100.0]])
    widget.refresh_preview()  # the decoder starts on the first click ...
    assert widget._preview_worker is not None
    widget.points_layer.add([[60.0, 20.0]])
    widget.refresh_preview()  # ... and is still busy when the second one comes
    qtbot.waitUntil(lambda: not widget.preview_pending(), timeout=WAIT_MS)
    assert len(widget.session.prompt.points) == 2
    expected = segmenter.predict(embedding, widget.session.prompt, multimask=False).best_mask
    np.testing.assert_array_equal(widget.preview_layer.data, expected.astype(np.uint8))


def test_accept_undo_redo_save_load_by_keys(qtbot, widget, sam_and_embedding, tmp_path):
    from napari.utils.key_bindings import coerce_keybinding

    assert {coerce_keybinding(key) for key in KEY_BINDINGS} <= set(widget.viewer.keymap)
    widget.points_layer.add([[20.0, 100.0]])
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        press(widget, "K")  # before the preview of that click exists: the accept waits for it
    objects = widget.viewer.layers["coffee objects"]
    assert objects.data is widget.session.labels
    first = widget.session.objects[0]
    assert first.label == 1 and first.prompt.points.xy.tolist() == [[100.0, 20.0]]
    segmenter, embedding = sam_and_embedding
    np.testing.assert_array_equal(objects.data == 1, segmenter.predict(embedding, first.prompt, multimask=True).best_mask)
    assert len(widget.points_layer.data) == 0 and not widget.preview_layer.data.any()

    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[0.0, 0.0], [79.0, 60.0]]))
    second_preview = widget.session.preview.copy()
    press(widget, "K")
    np.testing.assert_array_equal(objects.data == 2, second_preview & (objects.data != 1))
    assert len(widget.boxes_layer.data) == 0
    saved = objects.data.copy()

    press(widget, "U")
    assert not (objects.data == 2).any() and (objects.data == 1).any()
    press(widget, "Shift-U")
    np.testing.assert_array_equal(objects.data, saved)

    json_path = widget.save_annotations(tmp_path / "coffee.tif")
    assert json_path.name == "coffee.session.json"
    np.testing.assert_array_equal(read_mask(tmp_path / "coffee.tif"), saved)
    press(widget, "U")
    press(widget, "U")
    assert not objects.data.any()
    widget.load_annotations(tmp_path / "coffee.tif")
    np.testing.assert_array_equal(objects.data, saved)
    assert [o.prompt.box for o in widget.session.objects] == [None, Box(0.0, 0.0, 60.0, 79.0)]

    press(widget, "T")
    assert not widget.points_layer.feature_defaults["include"][0]
    before = len(notification_manager.records)
    add_point(qtbot, widget, row=60, col=20)  # an exclude click alone says only where the object is not
    assert any("only exclude points" in str(n.message) for n in notification_manager.records[before:])
    press(widget, "Q")
    press(widget, "T")
    add_point(qtbot, widget, row=60, col=20)
    press(widget, "N")
    assert widget.session.candidate == 1
    press(widget, "Shift-N")
    assert widget.session.candidate == 0
    press(widget, "Q")
    assert len(widget.points_layer.data) == 0 and widget.session.preview is None


def test_user_errors_become_notifications(qtbot, widget):
    before = len(notification_manager.records)
    widget.text_edit.setText("coffee cup")  # SAM accepts no text prompt
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.text_edit.editingFinished.emit()
    press(widget, "K")  # nothing to accept
    widget.classes_edit.setText("cup")
    widget.classes_button.click()  # SAM takes no text: the worker's refusal is shown
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert sum("does not accept text" in m for m in messages) == 2, messages  # preview and semantic mode
    assert any("no preview to accept" in m for m in messages), messages


def test_embedding_runs_in_a_worker_and_reopens_from_cache(qtbot, make_napari_viewer, sam_and_embedding, tmp_path):
    segmenter, expected = sam_and_embedding
    viewer = make_napari_viewer()
    viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    widget.use_segmenter(segmenter)

    ticks_while_busy = []
    timer = qtbot_timer(qtbot, lambda: ticks_while_busy.append(widget.worker is not None))
    started = time.perf_counter()
    with qtbot.waitSignal(widget.embedding_ready, timeout=WAIT_MS):
        widget.compute_embedding()
        assert widget.worker is not None and not widget.embed_button.isEnabled()
    first = time.perf_counter() - started
    timer.stop()
    # The GUI thread kept handling timer events while the encoder ran.
    assert sum(ticks_while_busy) >= 3, (first, ticks_while_busy)
    assert widget.session.embedding.model_id == expected.model_id
    np.testing.assert_allclose(widget.session.embedding.features, expected.features, atol=1e-5)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    started = time.perf_counter()
    with qtbot.waitSignal(widget.embedding_ready, timeout=WAIT_MS):
        widget.compute_embedding()
    assert time.perf_counter() - started < first  # the cache answered, the encoder did not run
    assert widget.progress_bar.format().startswith("embedding loaded from cache")


def qtbot_timer(qtbot, callback, interval_ms: int = 10):
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(callback)
    timer.start()
    return timer


def test_checkpoint_errors_are_notifications(qtbot, make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    widget.backend_combo.setCurrentText("sam")
    widget.checkpoint_edit.setText(str(tmp_path / "missing.pth"))
    assert widget.checkpoint_status.text() == f"accepts box, mask, points; {tmp_path / 'missing.pth'}: MISSING"
    before = len(notification_manager.records)
    widget.compute_embedding()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("missing.pth: checkpoint file does not exist" in m for m in messages), messages
    assert widget.session is None and widget.status_label.text().startswith("failed: ")
    assert widget.embed_button.isEnabled()


def test_semantic_mode_text_classes_and_reference_ids(qtbot, make_napari_viewer, tmp_path):
    clipseg = create("clipseg", model_dir=tiny_clipseg_dir(tmp_path / "clipseg"))
    embedding = clipseg.embed(IMAGE)
    viewer = make_napari_viewer()
    layer = viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    widget.start_session(layer, clipseg, embedding)

    widget.classes_edit.setText("cup, saucer ,")
    with qtbot.waitSignal(widget.classes_ready, timeout=WAIT_MS):
        widget.segment_classes()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    expected = segment_classes(IMAGE, {"cup": "cup", "saucer": "saucer"}, clipseg, embedding=embedding)
    classes = viewer.layers["coffee classes"]
    np.testing.assert_array_equal(classes.data, expected.labels)
    assert list(classes.features["class"]) == ["background", "cup", "saucer"]

    # Without names, every id of the reference mask is one visual-reference class.
    reference_mask = np.zeros((80, 120), np.int32)
    reference_mask[10:30, 20:60], reference_mask[50:70, 70:110] = 1, 4
    viewer.add_labels(reference_mask, name="ref")
    widget.classes_edit.clear()
    widget.reference_image_combo.setCurrentText("coffee")
    widget.reference_mask_combo.setCurrentText("ref")
    prompts = widget.class_prompts()
    assert list(prompts) == ["ref 1", "ref 4"]
    np.testing.assert_array_equal(prompts["ref 4"].mask, reference_mask == 4)
    with qtbot.waitSignal(widget.classes_ready, timeout=WAIT_MS):
        widget.segment_classes()
    expected = segment_classes(IMAGE, prompts, clipseg, embedding=embedding)
    np.testing.assert_array_equal(viewer.layers["coffee classes"].data, expected.labels)
    assert list(viewer.layers["coffee classes"].features["class"]) == ["background", "ref 1", "ref 4"]


def test_classical_backend_end_to_end_and_screenshot(qtbot, make_napari_viewer):
    """The registry's classical backend through the worker: box -> cup, then a screenshot of it all."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1200, 800)
    layer = viewer.add_image(data.coffee()[::2, ::2], name="coffee", rgb=True)  # (200, 300, 3)
    widget = SegpromptWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt")
    widget.backend_combo.setCurrentText("classical")
    with qtbot.waitSignal(widget.embedding_ready, timeout=WAIT_MS):
        widget.compute_embedding()
    assert widget.session.segmenter.name == "classical" and widget.objects_layer.data.shape == layer.data.shape[:2]

    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[6.0, 84.0], [146.0, 206.0]]))  # the cup, (row, col)
    assert widget.session.preview_method in widget.candidate_label.text()  # how the classical mask was made
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        widget.accept()
    cup = widget.objects_layer.data == 1
    rows, cols = np.nonzero(cup)
    assert cup[70, 143]  # the coffee in the cup
    assert not cup[190, 5] and not cup[125, 55]  # the table, the saucer's rim
    assert rows.min() >= 6 and rows.max() <= 146 and cols.min() >= 84 and cols.max() <= 206
    add_point(qtbot, widget, row=125, col=55)  # a preview on the saucer stays on screen
    press(widget, "N")  # the next-ranked candidate, to show a larger one
    assert widget.preview_layer.data.sum() == widget.session.preview.sum() > 0

    viewer.reset_view()
    qtbot.wait(200)  # let the canvas redraw after the resize
    shot = viewer.screenshot(canvas_only=False, flash=False)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    write_image(ARTIFACTS / "napari_widget.png", shot[..., :3])
    # The canvas really rendered the image (a blank GL canvas is one flat colour) ...
    assert canvas[..., :3].std() > 10, "the napari canvas rendered blank (no OpenGL?)"
    # ... and the window shows more than the canvas: the docked widget.
    assert shot.shape[1] > canvas.shape[1]
    assert len(np.unique(shot[..., :3].reshape(-1, 3), axis=0)) > 1000


def test_closing_the_widget_unbinds_its_keys(qtbot, make_napari_viewer):
    from napari.utils.key_bindings import coerce_keybinding

    viewer = make_napari_viewer()
    widget = SegpromptWidget(viewer)
    assert coerce_keybinding("K") in viewer.keymap
    with qtbot.waitSignal(widget.destroyed, timeout=WAIT_MS):
        widget.deleteLater()
    assert not {coerce_keybinding(key) for key in KEY_BINDINGS} & set(viewer.keymap)


def test_plugin_menu_docks_the_widget_and_opens_samples(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("segprompt", "segprompt")
    assert isinstance(widget, SegpromptWidget)
    viewer.open_sample("segprompt", "coffee")
    assert viewer.layers["coffee"].data.shape == (400, 600, 3)
    assert widget.image_combo.currentText() == "coffee"  # the picker follows the layer list


def test_sam3_text_and_exemplar_boxes_give_every_instance_its_own_label(qtbot, make_napari_viewer, tmp_path):
    from segprompt.testing import tiny_sam3_dir

    sam3 = create("sam3", model_dir=tiny_sam3_dir(tmp_path / "sam3"), threshold=0.0)
    embedding = sam3.embed(IMAGE)
    viewer = make_napari_viewer()
    layer = viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    widget.start_session(layer, sam3, embedding)
    assert widget.exemplars_layer is not None  # made because the backend takes exemplars

    widget.text_edit.setText("cup")
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.exemplars_layer.add_rectangles(np.array([[5.0, 40.0], [60.0, 110.0]]))  # (row, col) corners
    widget.toggle_include()
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.exemplars_layer.add_rectangles(np.array([[60.0, 0.0], [79.0, 30.0]]))
    qtbot.waitUntil(lambda: not widget.preview_pending(), timeout=WAIT_MS)
    prompt = widget.session.prompt
    assert prompt.text.phrase == "cup"
    np.testing.assert_array_equal(prompt.exemplars.boxes, [[40, 5, 110, 60], [0, 60, 30, 79]])
    np.testing.assert_array_equal(prompt.exemplars.labels, [1, 0])
    np.testing.assert_allclose(widget.exemplars_layer.edge_color[:, :3], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # lime, red
    expected = sam3.predict(embedding, prompt).instances
    assert len(expected) == 20
    np.testing.assert_array_equal(widget.preview_layer.data, expected.to_label_map())
    assert "20 instances" in widget.candidate_label.text()

    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        widget.accept()
    objects = widget.objects_layer.data
    visible = [k for k in range(len(expected)) if (expected.masks[k] & ~expected.masks[:k].any(axis=0)).any()]
    assert len(widget.session.objects) == len(visible) and objects.max() == len(visible)
    np.testing.assert_array_equal(objects > 0, expected.union())
    np.testing.assert_array_equal(objects == 1, expected.masks[0])  # the best instance is object 1, whole
    assert [o.score for o in widget.session.objects] == [float(expected.scores[k]) for k in visible]
    assert len(widget.exemplars_layer.data) == 0
    widget.undo()  # one undo takes the whole concept answer back
    assert not objects.any() and not widget.session.objects
    widget.redo()
    assert objects.max() == len(visible)


def test_the_backend_picker_offers_every_backend_and_its_sizes(make_napari_viewer, tmp_path):
    from segprompt.backends import backend_names
    from segprompt.testing import tiny_sam2_dir

    viewer = make_napari_viewer()
    widget = SegpromptWidget(viewer)
    names = [widget.backend_combo.itemText(i) for i in range(widget.backend_combo.count())]
    assert names == backend_names() and {"sam2", "sam-hq", "edgetam", "sam3-tracker", "sam3"} <= set(names)
    widget.backend_combo.setCurrentText("sam2")
    sizes = [widget.variant_combo.itemText(i) for i in range(widget.variant_combo.count())]
    assert sizes == ["large", "tiny", "small", "base-plus"] and widget.variant_combo.isEnabled()
    assert widget.checkpoint_status.text().startswith("accepts box, mask, points; facebook/sam2.1-hiera-large: not here")
    widget.variant_combo.setCurrentText("tiny")
    assert "facebook/sam2.1-hiera-tiny" in widget.checkpoint_status.text()
    widget.backend_combo.setCurrentText("sam3")
    assert not widget.variant_combo.isEnabled() and widget.checkpoint_status.text().startswith("accepts exemplars, text")
    widget.backend_combo.setCurrentText("sam2")
    widget.checkpoint_edit.setText(str(tiny_sam2_dir(tmp_path / "sam2")))  # a folder: the model folder
    _, make = widget._segmenter_factory()
    segmenter = make()
    assert segmenter.name == "sam2" and segmenter.model.config.vision_config.fpn_hidden_size == 32


def test_sam3_text_and_a_click_refine_one_instance_through_the_picked_route(qtbot, make_napari_viewer, tmp_path):
    """The picker offers the compositions; ``sam3-refine`` from a SAM 3 folder: a phrase, then a click picks one instance."""
    from segprompt.backends import get_backend_class
    from segprompt.instances import InstancesPrediction
    from segprompt.testing import tiny_sam3_dir

    # transformers' SAM 3 modules import torch._dynamo (and triton): before the viewer's OpenGL, as the other SAM 3 test
    folder = tiny_sam3_dir(tmp_path / "sam3")
    viewer = make_napari_viewer()
    layer = viewer.add_image(IMAGE, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    names = [widget.backend_combo.itemText(i) for i in range(widget.backend_combo.count())]
    assert {"composed", "sam3-refine", "sam3-reference"} <= set(names)
    widget.backend_combo.setCurrentText("sam3-reference")
    kinds = ", ".join(sorted(get_backend_class("sam3-reference").accepts))
    assert widget.checkpoint_status.text().startswith(f"accepts {kinds}")
    widget.backend_combo.setCurrentText("sam3-refine")
    widget.checkpoint_edit.setText(str(folder))
    _, make = widget._segmenter_factory()
    route = make()
    assert route.name == "sam3-refine" and route.shares_backbone
    route.proposer.threshold = 0.0  # the random detector's instances score about 0.25
    embedding = route.embed(IMAGE)
    widget.start_session(layer, route, embedding)

    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.text_edit.setText("cup")
        widget.text_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: not widget.preview_pending(), timeout=WAIT_MS)
    everything = route.predict(embedding, widget.session.prompt)
    assert isinstance(everything, InstancesPrediction) and len(everything.instances) > 1
    np.testing.assert_array_equal(widget.preview_layer.data, everything.instances.to_label_map())

    add_point(qtbot, widget, row=40, col=60)
    qtbot.waitUntil(lambda: not widget.preview_pending(), timeout=WAIT_MS)
    prompt = widget.session.prompt
    assert prompt.text.phrase == "cup" and prompt.points.xy.tolist() == [[60.0, 40.0]]
    expected = route.predict(embedding, prompt, multimask=True).best_mask
    np.testing.assert_array_equal(widget.preview_layer.data, expected.astype(np.uint8))


def test_tiles_embed_a_large_image_piece_by_piece_and_are_saved_with_the_session(qtbot, make_napari_viewer):
    """The "tiles" row wraps the backend: a box across tiles gives one stitched object; the session records the
    tiling so replay rebuilds it; a tile too small is a notification."""
    from segprompt.backends.tiled import TiledEmbedding

    viewer = make_napari_viewer()
    image = data.coffee()[::2, ::2]  # (200, 300, 3)
    viewer.add_image(image, name="coffee", rgb=True)
    widget = SegpromptWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt")
    widget.backend_combo.setCurrentText("classical")
    assert widget.tiling_fields.options() == {} and not widget.tiling_fields.halo_spin.isEnabled()
    widget.tiling_fields.tile_spin.setValue(16)
    before = len(notification_manager.records)
    widget.compute_embedding()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert any("tiles must be at least 32 px" in str(n.message) for n in notification_manager.records[before:])

    widget.tiling_fields.tile_spin.setValue(128)
    widget.tiling_fields.halo_spin.setValue(32)
    with qtbot.waitSignal(widget.embedding_ready, timeout=WAIT_MS):
        widget.compute_embedding()
    assert isinstance(widget.session.embedding, TiledEmbedding) and len(widget.session.embedding.grid) == 6
    assert widget.session.backend_options == {"tile_shape": 128, "halo": 32}
    with qtbot.waitSignal(widget.preview_updated, timeout=WAIT_MS):
        widget.boxes_layer.add_rectangles(np.array([[6.0, 84.0], [146.0, 206.0]]))  # the cup, over four tiles
    with qtbot.waitSignal(widget.objects_changed, timeout=WAIT_MS):
        widget.accept()
    cup = widget.objects_layer.data == 1
    assert cup[70, 143] and not cup[190, 5]
