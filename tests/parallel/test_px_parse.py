"""The options of the ``%px`` family: ipyparallel's names and meanings, parsed without eval."""

from __future__ import annotations

import signal

import pytest

from parallel.magics import PxArgs, PxUsageError, parse_px
from parallel.magics._px_magics import PxConfig
from parallel.magics._px_parse import parse_signal, parse_targets


def test_a_px_line_is_code_when_it_has_no_options() -> None:
    assert parse_px("a = 1") == PxArgs(code="a = 1")
    assert parse_px("  print(a)  ") == PxArgs(code="print(a)")
    # Python that starts with "-" is code, not an unknown option.
    assert parse_px("-1").code == "-1"
    assert parse_px("-x + 1").code == "-x + 1"
    assert parse_px("a=1").code == "a=1"


def test_px_options_come_before_the_code() -> None:
    args = parse_px("-t 0 --noblock -o ar print(a, 'x  y')")
    assert (args.targets, args.block, args.save_name) == (0, False, "ar")
    assert args.code == "print(a, 'x  y')"  # inner spacing kept
    assert parse_px("--targets=all --stream x").targets == "all"
    assert parse_px("-- -b").code == "-b"  # code that looks like an option


@pytest.mark.parametrize(
    ("text", "targets"),
    [
        ("all", "all"),
        ("0", 0),
        ("-1", -1),
        ("0,2", [0, 2]),
        ("[0, 2]", [0, 2]),
        ("[3]", [3]),
        ("::2", slice(None, None, 2)),
        ("1:", slice(1, None)),
        ("-2:", slice(-2, None)),
        ("0:4:2", slice(0, 4, 2)),
    ],
)
def test_targets_are_ids_lists_slices_or_all(text: str, targets: object) -> None:
    assert parse_targets(text) == targets


@pytest.mark.parametrize("text", ["", "x", "0,a", "1:2:3:4", "::0", "__import__('os')"])
def test_bad_targets_are_refused_without_evaluating_them(text: str) -> None:
    with pytest.raises(PxUsageError, match="targets"):
        parse_targets(text)


def test_flags_and_values_of_each_option() -> None:
    args = parse_px(
        "-b --no-stream --group-outputs=type --verbose --signal-on-interrupt SIGKILL "
        "--progress-after 0.5",
        "cell",
    )
    assert args.block is True
    assert args.stream is False
    assert args.groupby == "type"
    assert args.verbose is True
    assert args.signal == int(signal.SIGKILL)
    assert args.progress_after == 0.5
    assert parse_px("-a", "cell").block is False
    assert parse_px("-e", "result").groupby == "engine"
    assert parse_px("-r", "result").groupby == "order"
    assert parse_px("--local", "cell").local is True
    assert parse_px("", "cell") == PxArgs()


def test_signals_by_name_or_number() -> None:
    assert parse_signal("SIGINT") == int(signal.SIGINT)
    assert parse_signal("int") == int(signal.SIGINT)
    assert parse_signal("9") == 9
    assert parse_signal("0") == 0


@pytest.mark.parametrize(
    ("line", "kind", "message"),
    [
        ("--foo x", "px", "unknown option '--foo'"),
        ("-t", "px", "-t needs a value"),
        ("-t 0", "px", "%px needs code to run"),
        ("", "px", "%px needs code to run"),
        ("stray", "cell", "%%px: unexpected 'stray'"),
        ("--local", "config", "%pxconfig: unknown option '--local'"),
        ("-t 0", "result", "%pxresult: unknown option '-t'"),
        ("--group-outputs=x", "cell", "must be engine, order or type"),
        ("-o 1x", "cell", "needs a variable name"),
        ("--block=yes", "cell", "--block takes no value"),
        ("--progress-after soon", "cell", "needs seconds"),
        ("--signal-on-interrupt NOPE", "cell", "no signal named 'NOPE'"),
    ],
)
def test_bad_options_get_one_clear_line(line: str, kind: str, message: str) -> None:
    with pytest.raises(PxUsageError) as caught:
        parse_px(line, kind)  # type: ignore[arg-type]
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_the_usage_line_names_the_options_of_that_magic() -> None:
    with pytest.raises(PxUsageError) as caught:
        parse_px("--nope", "cell")
    assert "-t/--targets T" in str(caught.value)
    assert "--local" in str(caught.value)
    with pytest.raises(PxUsageError) as caught:
        parse_px("--nope", "result")
    assert "--local" not in str(caught.value)
    assert "-o/--out NAME" in str(caught.value)


def test_pxconfig_defaults_fill_what_a_line_leaves_out() -> None:
    config = PxConfig()
    settings = config.resolve(parse_px("x"))
    assert (settings.targets, settings.block, settings.stream, settings.groupby) == (
        None,
        True,
        True,
        "engine",
    )
    config.update(parse_px("-t ::2 --noblock --no-stream", "config"))
    settings = config.resolve(parse_px("--block x"))
    assert settings.targets == slice(None, None, 2)
    assert settings.block is True  # the line wins over the default
    assert settings.stream is False
