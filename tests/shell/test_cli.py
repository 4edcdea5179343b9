"""``loom``'s command line: options reach the console wherever they are written."""

from __future__ import annotations

import pytest

from shell.cli import _parser


@pytest.mark.parametrize(
    ("argv", "kernel", "existing", "vi"),
    [
        ([], None, None, None),
        (["--vi"], None, None, True),
        (["--vi", "console"], None, None, True),
        (["console", "--vi"], None, None, True),
        (["--kernel", "python3", "console"], "python3", None, None),
        (["console", "--kernel", "python3", "--existing"], "python3", "", None),
        (["--existing", "k.json", "console", "--vi"], None, "k.json", True),
    ],
)
def test_console_options_before_or_after_the_subcommand(
    argv: list[str], kernel: str | None, existing: str | None, vi: bool | None
) -> None:
    args = _parser(argv).parse_args(argv)
    assert (args.kernel, args.existing, args.vi) == (kernel, existing, vi)
