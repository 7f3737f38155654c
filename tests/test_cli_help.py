"""The CLI explains itself: examples in --help, --version, help on every option, --out with --output as alias."""

from __future__ import annotations

import argparse

import pytest

from bench.cli import build_parser, main


def _parsers(parser, path=("bench",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_of_every_command_has_help_and_no_abbreviations():
    for path, parser in _parsers(build_parser()):
        assert parser.allow_abbrev is False, " ".join(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            assert action.help, f"{' '.join(path)} {action.option_strings or action.dest} has no help"


def test_out_and_output_are_the_same_option_everywhere():
    for path, parser in _parsers(build_parser()):
        flags = {f: a for a in parser._actions for f in a.option_strings}
        if "--out" in flags or "--output" in flags:
            assert flags.get("--out") is flags.get("--output"), " ".join(path)


def test_help_has_examples_and_version_names_the_commit(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "bench run --methods all --dataset toy --preset smoke" in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("bench 0.1.0 (git ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--restart" in capsys.readouterr().out
