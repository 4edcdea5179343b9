"""IPython syntax to Python, line for line: what is rewritten, what must never be touched."""

from __future__ import annotations

import ast
import inspect
import pathlib
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernel
from kernel.server.interpreter._transform import transform_cell

REWRITTEN: list[tuple[str, str]] = [
    # line magics, at statement start and indented
    ("%time x = 1", "_loom_magic_('time', 'x = 1')"),
    ("%pwd", "_loom_magic_('pwd', '')"),
    ("%cd  two spaces", "_loom_magic_('cd', ' two spaces')"),
    ("if True:\n    %pwd", "if True:\n    _loom_magic_('pwd', '')"),
    ("\t%pwd", "\t_loom_magic_('pwd', '')"),
    ("%run 'my file.py' -x", "_loom_magic_('run', \"'my file.py' -x\")"),
    # magic assignments
    ("x = %pwd", "x = _loom_magic_('pwd', '')"),
    ("x=%env HOME", "x=_loom_magic_('env', 'HOME')"),
    ("a, b = %who_ls", "a, b = _loom_magic_('who_ls', '')"),
    ("d['k'] = %pwd", "d['k'] = _loom_magic_('pwd', '')"),
    # shell commands
    ("!ls -l", "_loom_system_('ls -l')"),
    ("!echo {x} $y", "_loom_system_('echo {x} $y')"),
    ("!!ls", "_loom_getoutput_('ls')"),
    ("for i in range(3):\n    !echo {i}", "for i in range(3):\n    _loom_system_('echo {i}')"),
    ("x = !echo hi", "x = _loom_getoutput_('echo hi')"),
    ("x=!ls", "x=_loom_getoutput_('ls')"),
    ("files: list = !ls", "files: list = _loom_getoutput_('ls')"),
    ('!echo "it\'s"', "_loom_system_('echo \"it\\'s\"')"),
    # help
    ("obj?", "_loom_help_('obj', 0)"),
    ("obj??", "_loom_help_('obj', 1)"),
    ("?obj", "_loom_help_('obj', 0)"),
    ("??obj", "_loom_help_('obj', 1)"),
    ("os.path.join?", "_loom_help_('os.path.join', 0)"),
    ("a[0]?", "_loom_help_('a[0]', 0)"),
    ("np.*arr*?", "_loom_help_('np.*arr*', 0)"),
    ("%time?", "_loom_help_('%time', 0)"),
    ("%%time?", "_loom_help_('%%time', 0)"),
    ("    obj?  ", "    _loom_help_('obj', 0)"),
    ("?", "_loom_help_('', 0)"),
    # cell magics
    ("%%time\nx = 1\ny = 2", "_loom_cell_magic_('time', '', 'x = 1\\ny = 2\\n')\n\n"),
    ("%%bash\necho hi\n", "_loom_cell_magic_('bash', '', 'echo hi\\n')\n\n"),
    ("\n%%capture out\nprint(1)", "\n_loom_cell_magic_('capture', 'out', 'print(1)\\n')\n"),
    ("%%writefile f.py", "_loom_cell_magic_('writefile', 'f.py', '')"),
    # a cell magic below the first line is a (failing) line magic, with its second %
    ("x = 1\n%%time", "x = 1\n_loom_magic_('%time', '')"),
    # after the end of a string, bracket or continuation, syntax is recognised again
    ('s = """\n%foo\n"""\n%pwd', 's = """\n%foo\n"""\n_loom_magic_(\'pwd\', \'\')'),
    ("d = {\n  'a': 1,\n}\n!ls", "d = {\n  'a': 1,\n}\n_loom_system_('ls')"),
    ("x = 1 + \\\n  2\n%pwd", "x = 1 + \\\n  2\n_loom_magic_('pwd', '')"),
    ('x = "a"  # a " quote\n%pwd', "x = \"a\"  # a \" quote\n_loom_magic_('pwd', '')"),
    ("x = \"'''\"\n%pwd", "x = \"'''\"\n_loom_magic_('pwd', '')"),
    ("f'{x:{w}}'\n%pwd", "f'{x:{w}}'\n_loom_magic_('pwd', '')"),
    # a special line continued with backslashes becomes one call and blank lines
    ("!echo a \\\n  b\nc = 1", "_loom_system_('echo a    b')\n\nc = 1"),
    # CRLF line ends are kept
    ("x = 1\r\n%pwd\r\n", "x = 1\r\n_loom_magic_('pwd', '')\r\n"),
]

UNTOUCHED: list[str] = [
    "a % b",
    "x %= 3",
    "x = a %b",
    "a != b",
    "if not (a != b): pass",
    "'%s' % x",
    "print('?')",
    "s = '!ls'",
    'f"{x!r} {y!s:>10} %d ?"',
    "# %pwd and !ls and obj?",
    "x = 1  # y = !z",
    "x = 1  # why?",
    "d = {'a': 1, 'b': {2, 3}}",
    "s = {1, 2}",
    "lambda: x % y",
    "x = (1,\n%2)",
    "x = [\n    !y\n]",
    "x = a \\\n% b",
    's = """\n%magic\n!cmd\nobj?\n"""',
    "s = '''\n%%cell\n'''",
    "s = r'''\n\\'''\n%foo'''",
    "s = 'abc\\\n%def'",
    "x = f'''{\n1}\n%pwd'''",
    "b = rb'%d?' % 3",
    'print("=%d" % 3)',
    "s = 'a = !b'",
    's = "x"; t = "y=%d" % 1',
    "@decorator\ndef f(x=1):\n    return x % 2",
    "match x:\n    case {'k': 1}:\n        pass",
    "",
    "\n\n",
    "x = 1\n",
]


@pytest.mark.parametrize(("cell", "expected"), REWRITTEN)
def test_rewritten(cell: str, expected: str) -> None:
    assert transform_cell(cell) == expected


@pytest.mark.parametrize("cell", UNTOUCHED)
def test_untouched(cell: str) -> None:
    assert transform_cell(cell) == cell


@pytest.mark.parametrize(("cell", "expected"), REWRITTEN)
def test_output_is_python_with_the_same_line_count(cell: str, expected: str) -> None:
    out = transform_cell(cell)
    assert out.count("\n") == cell.count("\n")
    ast.parse(textwrap.dedent(out))  # a lone indented line is fine in a cell body


def test_table_is_big_enough() -> None:
    assert len(REWRITTEN) + len(UNTOUCHED) >= 30


def test_special_line_keeps_its_line_number() -> None:
    cell = "a = 1\nb = 2\n!echo hi\nc = 1/0\n"
    out = transform_cell(cell)
    assert out.splitlines()[2] == "_loom_system_('echo hi')"
    assert out.splitlines()[3] == "c = 1/0"


def test_the_project_sources_pass_through_unchanged() -> None:
    root = pathlib.Path(kernel.__file__).resolve().parents[1]
    sources = [*root.glob("kernel/**/*.py"), pathlib.Path(inspect.getfile(ast))]
    assert len(sources) > 5
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert transform_cell(text) == text, path


@given(st.text(alphabet="%!?ab =\n'\"#()\\{}:", max_size=60))
def test_never_raises_and_keeps_the_line_count(cell: str) -> None:
    assert transform_cell(cell).count("\n") == cell.count("\n")
