"""The npe2 manifest and the sample data: no Qt display needed."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np


def test_manifest_validates_and_is_discovered():
    import npe2

    manifest = npe2.PluginManifest.from_file(Path(__file__).parents[1] / "napari_plugin" / "napari.yaml")
    assert manifest.name == "segprompt"
    assert [w.display_name for w in manifest.contributions.widgets] == ["segprompt", "segprompt volume"]
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    module, name = commands[manifest.contributions.widgets[1].command].split(":")
    from napari_plugin._volume_widget import VolumeWidget

    assert getattr(importlib.import_module(module), name) is VolumeWidget
    assert {s.key for s in manifest.contributions.sample_data} == {"astronaut", "coins", "coffee"}
    installed = npe2.PluginManager.instance()
    installed.discover()
    assert installed.get_manifest("segprompt").contributions.widgets[0].command == "segprompt.annotator"
    module, name = installed.get_command("segprompt.annotator").python_name.split(":")
    from napari_plugin._widget import SegpromptWidget

    assert getattr(importlib.import_module(module), name) is SegpromptWidget


def test_sample_data_are_scikit_image_images():
    from napari_plugin import _sample_data

    [(pixels, meta, kind)] = _sample_data.coffee()
    assert pixels.shape == (400, 600, 3) and pixels.dtype == np.uint8 and kind == "image" and meta["rgb"]
    [(pixels, _, _)] = _sample_data.coins()
    assert pixels.shape == (303, 384)
