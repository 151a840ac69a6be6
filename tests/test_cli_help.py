"""Every verb's ``--help`` reads as plain text, documents every option, and a wrong flag shows that verb's usage."""

from __future__ import annotations

import argparse
import re

import pytest

from segprompt.cli import build_parser, main

#: reStructuredText / Sphinx markup that must never reach a terminal.
MARKUP = re.compile(r"``|:(?:meth|class|func|mod|data|attr|obj|exc|ref|py:\w+):`|\.\. \w+::")


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(verb path, parser)`` for the top level and every nested sub-parser."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))
VERBS = [path for path in PARSERS if path]


@pytest.mark.parametrize("path", VERBS, ids=" ".join)
def test_help_is_plain_text(path):
    text = PARSERS[path].format_help()
    assert not MARKUP.search(text), f"segprompt {' '.join(path)} --help shows markup: {MARKUP.search(text).group()!r}"


@pytest.mark.parametrize("path", VERBS, ids=" ".join)
def test_every_option_has_help_and_shows_its_default(path):
    for action in PARSERS[path]._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1]
        assert action.help, f"segprompt {' '.join(path)} {flag} has no help"
        default = action.default
        if default not in (None, False, argparse.SUPPRESS) and not (isinstance(default, (list, tuple)) and not default):
            line = PARSERS[path]._get_formatter()._expand_help(action)
            assert "default" in line, f"segprompt {' '.join(path)} {flag}: help does not show its default {default!r}"


def test_tune_explains_each_method():
    from segprompt.tuning import method_names

    text = PARSERS[("tune",)].format_help()
    for name in method_names():
        assert re.search(rf"^\s+{re.escape(name)}\s*:", text, re.MULTILINE), f"tune --help does not explain {name}"


def test_segment_says_it_takes_every_prompt_kind():
    summary = next(
        a for a in PARSERS[()]._actions if isinstance(a, argparse._SubParsersAction)
    )._choices_actions
    line = next(c.help for c in summary if c.dest == "segment")
    for kind in ("point", "box", "mask", "text", "reference"):
        assert kind in line, f"segprompt --help, segment: {line!r} omits {kind}"


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["segment", "x.png", "--out", "m.png", "--no-such-flag"], "usage: segprompt segment"),
        (["bench", "pointprompt", "--data", "d", "--out", "o", "--no-such-flag"], "usage: segprompt bench pointprompt"),
        (["datasets", "inspect", "d", "--no-such-flag"], "usage: segprompt datasets inspect"),
        (["tune", "--method", "coop", "--data", "d", "--out", "o", "--no-such-flag"], "usage: segprompt tune"),
    ],
)
def test_a_wrong_flag_prints_the_verbs_usage(capsys, argv, usage):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: --no-such-flag" in err
