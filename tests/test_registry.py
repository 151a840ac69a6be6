"""The one registry type behind backends, point strategies, tuning methods and dataset layouts."""

from __future__ import annotations

import sys

import pytest

from segprompt.backends import BACKENDS, Segmenter
from segprompt.datasets.registry import LAYOUTS, Layout, layouts
from segprompt.errors import DatasetError, SegpromptError
from segprompt.pointprompt.strategies import STRATEGIES, StrategyError
from segprompt.registry import Registry, RegistryError
from segprompt.tuning.methods import METHODS


class _Entry:
    name = "first"


def test_a_duplicate_name_raises_naming_both_entries():
    registry: Registry[type] = Registry("widget")
    registry.register(_Entry)
    registry.register(_Entry)  # the same class again (a re-imported module) is no conflict

    class Other:
        name = "first"

    with pytest.raises(RegistryError, match=r"widget name 'first' is already registered by .*_Entry; .*Other needs"):
        registry.register(Other)
    assert registry.get("first") is _Entry


@pytest.mark.parametrize(
    "registry, taken",
    [(BACKENDS, "sam"), (STRATEGIES, "random"), (METHODS, "coop"), (LAYOUTS, "voc")],
    ids=["backend", "strategy", "tuning method", "layout"],
)
def test_every_kind_refuses_a_second_entry_under_a_taken_name(registry, taken):
    registry.get(taken)
    impostor = type("Impostor", (), {"name": taken})
    with pytest.raises(RegistryError, match=f"name '{taken}' is already registered"):
        registry.register(impostor)
    assert registry.get(taken) is not impostor


def test_unknown_names_raise_the_kinds_own_error():
    with pytest.raises(SegpromptError, match="unknown backend 'nope'; known: .*classical"):
        BACKENDS.get("nope")
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        STRATEGIES.get("nope")
    with pytest.raises(DatasetError, match="unknown layout 'nope'"):
        LAYOUTS.get("nope")
    with pytest.raises(RegistryError, match="has no name"):
        Registry("widget").register(type("Nameless", (), {}))


def test_listed_modules_are_imported_lazily_and_in_their_order(tmp_path, monkeypatch):
    """A name -> module registry imports only the module asked for; a sequence keeps module order."""
    (tmp_path / "widgets_registry.py").write_text(
        "from segprompt.registry import Registry\n"
        "LAZY = Registry('widget', {'a': 'widgets_a', 'b': 'widgets_b', 'gone': 'widgets_need_a_missing_package'})\n"
        "ORDERED = Registry('widget', ('widgets_b', 'widgets_a'))\n"
    )
    for name in ("a", "b"):
        (tmp_path / f"widgets_{name}.py").write_text(
            "from widgets_registry import LAZY, ORDERED\n"
            f"@ORDERED.register\n@LAZY.register\nclass Widget:\n    name = {name!r}\n"
        )
    (tmp_path / "widgets_need_a_missing_package.py").write_text("import segprompt_no_such_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("widgets_registry", "widgets_a", "widgets_b"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    import widgets_registry

    assert widgets_registry.LAZY.get("a").name == "a"
    assert "widgets_b" not in sys.modules  # listed, not imported until asked for
    assert widgets_registry.LAZY.names() == ["a", "b", "gone"]
    assert widgets_registry.LAZY.get("b").name == "b"
    assert widgets_registry.ORDERED.names() == ["b", "a"]  # "a" was imported first, but is listed second
    with pytest.raises(SegpromptError, match="widget 'gone' needs a package that is not installed"):
        widgets_registry.LAZY.get("gone")


def test_show_or_tell_layout_facts_are_layout_attributes():
    known = layouts()
    assert known["voc"].background_is_class and known["voc"].min_reference_area == 0.02
    assert known["ade20k"].min_reference_area == 0.04 and not known["ade20k"].background_is_class
    assert known["cityscapes"].min_reference_area == 0.01 and known["cityscapes"].background_is_class
    assert known["voc"].background_index == known["ade20k"].background_index == known["showortell"].background_index == 0
    assert known["cityscapes"].background_index is None and known["camvid"].background_index is None
    assert {known[name].domain for name in ("kvasir_seg", "busi", "skin_lesion_isic_ham", "sam_med2d_demo_ct")} == {"medical"}
    assert known["dsb2018_nuclei"].domain == known["isbi2012_em_membranes"].domain == "microscopy"
    assert known["camvid"].domain == "urban"
    assert Layout.domain == "unknown" and Layout.min_reference_area == 0.0 and not Layout.background_is_class


def test_backends_are_segmenters_under_their_own_names():
    for name in ("classical", "sam", "persam", "persam-f", "composed"):
        cls = BACKENDS.get(name)
        assert issubclass(cls, Segmenter) and cls.name == name
