"""Compiling and running the Python that magics are given (``%time stmt``, ``%%capture`` bodies).

The code is compiled as lines of the file it was typed in (a cell's ``<cell-N>`` name, whose
text the interpreter keeps in ``linecache``), so a traceback from it shows the user's line. It
may itself use IPython syntax: it goes through :func:`transform_cell` first.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from types import CodeType
from typing import Any

from ._transform import transform_cell

__all__ = ["CompiledBody", "compile_body", "ends_quietly", "parse_body"]


@dataclass(frozen=True, slots=True)
class CompiledBody:
    """Python ready to run: ``statements``, then the value of ``expression`` if there is one."""

    statements: CodeType
    expression: CodeType | None

    def run(self, globals_: dict[str, Any], locals_: dict[str, Any] | None = None) -> object:
        """Run the statements, then return the expression's value (``None`` if there is none).

        Whatever the code raises propagates.
        """
        exec(self.statements, globals_, locals_)
        if self.expression is None:
            return None
        return eval(self.expression, globals_, locals_)


def parse_body(source: str, filename: str, first_line: int) -> ast.Module:
    """Parse ``source`` (IPython syntax allowed) as lines ``first_line...`` of ``filename``.

    Raises :class:`SyntaxError`, pointing at the line of ``filename``.
    """
    padded = "\n" * (max(first_line, 1) - 1) + transform_cell(source)
    return ast.parse(padded, filename=filename)


def compile_body(source: str, filename: str, first_line: int, *, want_value: bool) -> CompiledBody:
    """Compile ``source`` as :func:`parse_body` parses it.

    With ``want_value``, a last statement that is an expression (and does not end with ``;``)
    becomes :attr:`CompiledBody.expression`, as a cell's last expression becomes its result.
    """
    tree = parse_body(source, filename, first_line)
    quiet = ends_quietly(transform_cell(source))
    return split_last_expression(tree, filename, want_value and not quiet)


def split_last_expression(tree: ast.Module, filename: str, want_value: bool) -> CompiledBody:
    """Compile ``tree``, its last expression statement apart when ``want_value``."""
    expression: CodeType | None = None
    if want_value and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        assert isinstance(last, ast.Expr)
        expression = compile(ast.Expression(last.value), filename, "eval", dont_inherit=True)
    statements = compile(tree, filename, "exec", dont_inherit=True)
    return CompiledBody(statements, expression)


def ends_quietly(source: str) -> bool:
    """True when the last code token of ``source`` is ``;`` (comments ignored), as in IPython.

    The one rule for "do not show the last expression's value", for cells and for the
    bodies of ``%time``/``%%capture`` alike: ``x; # c`` is quiet, ``x  # note;`` is not.
    """
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in _NOT_CODE:
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return source.rstrip().endswith(";")
    return last is not None and last.string == ";"


_NOT_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.ENDMARKER,
        tokenize.DEDENT,
        tokenize.INDENT,
    }
)
