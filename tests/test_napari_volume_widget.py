"""The "segprompt volume" dock widget on a real napari viewer: prompt the current slice, propagate in a worker.

Needs an X display like the other napari tests (pytest-xvfb; the ``display`` fixture skips without one and
fails under ``CI=true``).
"""

from __future__ import annotations

import numpy as np
import pytest

from segprompt.metrics import iou
from segprompt.volume.synthetic import ellipsoid_volume

from napari.utils.notifications import notification_manager

from napari_plugin._volume_widget import VolumeWidget

pytestmark = pytest.mark.usefixtures("display", "one_torch_thread")
WAIT_MS = 120_000
SHAPE = (24, 64, 80)


@pytest.fixture
def volume_widget(make_napari_viewer, qtbot):
    volume, truth, _ = ellipsoid_volume(SHAPE)
    viewer = make_napari_viewer()
    viewer.add_image(volume, name="cells")
    widget = VolumeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt volume")
    assert widget.image_combo.currentText() == "cells" and widget.backend_combo.currentText() == "classical"
    with qtbot.waitSignal(widget.session_ready, timeout=WAIT_MS):
        widget.start()
    return widget, truth


def go_to(widget: VolumeWidget, index: int) -> None:
    widget.viewer.dims.set_current_step(0, index)
    assert widget.current_slice == index


def test_prompt_a_slice_propagate_both_ways_and_correct(qtbot, volume_widget):
    widget, truth = volume_widget
    middle = SHAPE[0] // 2
    labels = widget.viewer.layers["cells volume labels"]
    assert labels.data.shape == SHAPE and not labels.data.any()

    go_to(widget, middle)
    rows, cols = np.nonzero(truth[middle])
    r0, c0, r1, c1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    widget.boxes_layer.add_rectangles(np.array([[middle, r0, c0], [middle, r0, c1], [middle, r1, c1], [middle, r1, c0]]))
    with qtbot.waitSignal(widget.labels_changed, timeout=WAIT_MS):
        widget.segment_button.click()
    assert iou(labels.data[middle] == 1, truth[middle]) > 0.9
    assert not np.delete(labels.data, middle, axis=0).any()  # only the prompted slice so far
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)  # one job at a time

    ticks = []
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.worker is not None))
    timer.start(5)
    with qtbot.waitSignal(widget.labels_changed, timeout=WAIT_MS):
        widget.direction_buttons["both"].click()
        assert widget.worker is not None  # the propagation runs in the background ...
    timer.stop()
    assert sum(ticks) >= 2  # ... while the GUI thread keeps running
    assert widget.progress_bar.value() == widget.progress_bar.maximum()
    found = np.flatnonzero(labels.data.any(axis=(1, 2)))
    inside = np.flatnonzero(truth.any(axis=(1, 2)))
    assert set(found) <= set(inside) and len(found) >= len(inside) - 4
    for z in found:
        if truth[z].sum() > 0.25 * truth.sum(axis=(1, 2)).max():
            assert iou(labels.data[z] == 1, truth[z]) > 0.8, z
    assert [run.direction for run in widget.last_runs] == ["up", "down"]
    assert "object 1 up from 12" in widget.status_label.text()

    # A correction of object 1 on slice 16 re-propagates from there, upwards only.
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    go_to(widget, 16)
    rows, cols = np.nonzero(truth[16])
    r0, c0, r1, c1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
    widget.boxes_layer.add_rectangles(np.array([[16, r0, c0], [16, r0, c1], [16, r1, c1], [16, r1, c0]]))
    with qtbot.waitSignal(widget.labels_changed, timeout=WAIT_MS):
        widget.segment_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    with qtbot.waitSignal(widget.labels_changed, timeout=WAIT_MS):
        widget.direction_buttons["up"].click()
    [up] = widget.last_runs
    assert (up.start, up.direction) == (16, "up") and sorted(widget.session.objects[1].anchors) == [12, 16]
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    # "embed all slices": a first pass in the worker, after which every slice is embedded.
    with qtbot.waitSignal(widget.worker_done, timeout=WAIT_MS):
        widget.embed_button.click()
    assert widget.session.propagator.embeddings.embedded == frozenset(range(SHAPE[0]))
    assert widget.status_label.text() == f"{SHAPE[0]} slices embedded"

    # A second object starts without prompts; include / exclude points on the current slice are its prompt.
    assert widget.new_object() == 2 and len(widget.boxes_layer.data) == 0
    widget.points_layer.add([[16, 10, 10]])
    widget.toggle_include()
    widget.points_layer.add([[16, 60, 70]])
    prompt = widget.current_prompt()
    np.testing.assert_array_equal(prompt.points.xy, [[10.0, 10.0], [70.0, 60.0]])
    np.testing.assert_array_equal(prompt.points.labels, [1, 0])
    assert prompt.box is None
    widget.clear_prompts()
    assert len(widget.points_layer.data) == 0


def test_mistakes_are_notifications(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 50), np.uint8), name="flat")
    widget = VolumeWidget(viewer)
    assert widget.image_combo.count() == 0  # 2-D layers are not offered
    before = len(notification_manager.records)
    widget.start_button.click()
    widget.segment_button.click()
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("no 3-D image layer" in m for m in messages), messages
    assert any("no session yet" in m for m in messages), messages


def test_tiles_apply_to_projection_and_are_refused_with_a_video_model(qtbot, make_napari_viewer):
    from segprompt.backends.tiled import TiledSegmenter

    viewer = make_napari_viewer()
    viewer.add_image(ellipsoid_volume(SHAPE)[0], name="cells")
    widget = VolumeWidget(viewer)
    widget.tiling_fields.tile_spin.setValue(48)
    widget.tiling_fields.halo_spin.setValue(16)
    with qtbot.waitSignal(widget.session_ready, timeout=WAIT_MS):
        widget.start()
    assert isinstance(widget.session.propagator.segmenter, TiledSegmenter)
    assert widget.session.propagator.segmenter.tiling == "tiles 48x48 halo 16x16"
    widget.backend_combo.setCurrentText("sam2")
    widget.propagation_combo.setCurrentText("video")
    before = len(notification_manager.records)
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("sam2's video model sees whole frames" in m for m in messages), messages


def test_a_time_series_of_volumes_is_read_at_the_current_time():
    from napari.layers import Image

    from segprompt.errors import SegpromptError
    from napari_plugin._volume_widget import layer_volume

    series = np.arange(2 * 3 * 8 * 9, dtype=np.uint16).reshape(2, 3, 8, 9)
    volume, stack_axis = layer_volume(Image(series), (1, 0, 0, 0))
    assert (volume.axes, stack_axis, len(volume)) == ("ZYX", 1, 3)
    np.testing.assert_array_equal(volume.plane(2), series[1, 2])
    rgb, _ = layer_volume(Image(np.zeros((4, 8, 9, 3), np.uint8), rgb=True), (0, 0, 0))
    assert rgb.axes == "ZYXC" and rgb.plane(0).shape == (8, 9, 3)
    with pytest.raises(SegpromptError, match="has 5 axes"):
        layer_volume(Image(np.zeros((2, 2, 2, 8, 9))), (0,) * 5)
