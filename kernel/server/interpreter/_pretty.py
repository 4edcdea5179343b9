"""IPython's pretty printer, so ``text/plain`` reads as it does in IPython and Jupyter.

:func:`pretty` gives the text IPython's ``PlainTextFormatter`` would: ``<__main__.Plain at
0x7f...>`` for objects without a ``__repr__`` of their own, ``<function __main__.f(x)>``,
``int`` for classes, sets sorted, long containers broken one item a line at width 79, at most
1000 items of a sequence, and ``_repr_pretty_(p, cycle)`` methods honoured (``p`` offers
IPython's printer API: ``text``, ``breakable``, ``break_``, ``begin_group``/``end_group``,
``group``, ``indent``, ``pretty``). IPython itself is never imported: this is a port of the
algorithm of ``IPython.lib.pretty`` (BSD-3-Clause, Copyright (c) IPython Development Team),
a Wadler-style printer whose groups break outermost first when a line gets too long.
The printers for particular types are in ``_pretty_printers``.
"""

from __future__ import annotations

import contextlib
import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._pretty_printers import (
    DEFAULT_PRINTER,
    NAMED_PRINTERS,
    REPR_PRINTER,
    SINGLETONS,
    TYPE_PRINTERS,
)

__all__ = ["MAX_SEQ_LENGTH", "MAX_WIDTH", "PrettyPrinter", "pretty"]

MAX_WIDTH = 79
MAX_SEQ_LENGTH = 1000

Printer = Callable[[Any, "PrettyPrinter", bool], object]


def pretty(obj: object, *, max_width: int = MAX_WIDTH, max_seq_length: int = MAX_SEQ_LENGTH) -> str:
    """``obj`` as IPython's pretty printer writes it. Exceptions of reprs propagate."""
    stream = io.StringIO()
    printer = PrettyPrinter(stream, max_width=max_width, max_seq_length=max_seq_length)
    printer.pretty(obj)
    printer.flush()
    return stream.getvalue()


class _Group:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.breakables: deque[_Breakable] = deque()
        self.want_break = False


class _Text:
    def __init__(self) -> None:
        self.objs: list[str] = []
        self.width = 0

    def output(self, stream: io.StringIO, output_width: int) -> int:
        stream.write("".join(self.objs))
        return output_width + self.width

    def add(self, text: str, width: int) -> None:
        self.objs.append(text)
        self.width += width


class _Breakable:
    def __init__(self, sep: str, printer: PrettyPrinter) -> None:
        self.obj = sep
        self.width = len(sep)
        self.printer = printer
        self.indentation = printer.indentation
        self.group = printer.group_stack[-1]
        self.group.breakables.append(self)

    def output(self, stream: io.StringIO, output_width: int) -> int:
        self.group.breakables.popleft()
        if self.group.want_break:
            stream.write("\n" + " " * self.indentation)
            return self.indentation
        if not self.group.breakables:
            self.printer.group_queue.remove(self.group)
        stream.write(self.obj)
        return output_width + self.width


class _GroupQueue:
    """Open groups by depth: the outermost group with breakables is the first to break."""

    def __init__(self, root: _Group) -> None:
        self.queue: list[list[_Group]] = []
        self.enq(root)

    def enq(self, group: _Group) -> None:
        while group.depth > len(self.queue) - 1:
            self.queue.append([])
        self.queue[group.depth].append(group)

    def deq(self) -> _Group | None:
        for stack in self.queue:
            for index, group in enumerate(reversed(stack)):
                if group.breakables:
                    # IPython deletes by the reversed index (so possibly another group of
                    # the same depth); kept as is, since matching its output is the point.
                    del stack[index]
                    group.want_break = True
                    return group
            for group in stack:
                group.want_break = True
            del stack[:]
        return None

    def remove(self, group: _Group) -> None:
        with contextlib.suppress(ValueError):
            self.queue[group.depth].remove(group)


class PrettyPrinter:
    """IPython's ``RepresentationPrinter``: what ``_repr_pretty_(p, cycle)`` receives as ``p``."""

    def __init__(
        self,
        output: io.StringIO,
        *,
        max_width: int = MAX_WIDTH,
        max_seq_length: int = MAX_SEQ_LENGTH,
        verbose: bool = False,
    ) -> None:
        self.output = output
        self.max_width = max_width
        self.max_seq_length = max_seq_length
        self.verbose = verbose
        self.newline = "\n"
        self.output_width = 0
        self.buffer_width = 0
        self.buffer: deque[_Text | _Breakable] = deque()
        root = _Group(0)
        self.group_stack = [root]
        self.group_queue = _GroupQueue(root)
        self.indentation = 0
        self.stack: list[int] = []
        self.type_pprinters: dict[type, Printer] = dict(TYPE_PRINTERS)
        self.deferred_pprinters: dict[tuple[str, str], Printer] = dict(NAMED_PRINTERS)

    # -- the layout engine -------------------------------------------------------------------

    def _break_one_group(self, group: _Group) -> None:
        while group.breakables:
            item = self.buffer.popleft()
            self.output_width = item.output(self.output, self.output_width)
            self.buffer_width -= item.width
        while self.buffer and isinstance(self.buffer[0], _Text):
            item = self.buffer.popleft()
            self.output_width = item.output(self.output, self.output_width)
            self.buffer_width -= item.width

    def _break_outer_groups(self) -> None:
        while self.max_width < self.output_width + self.buffer_width:
            group = self.group_queue.deq()
            if group is None:
                return
            self._break_one_group(group)

    def text(self, obj: str) -> None:
        """Add literal text."""
        width = len(obj)
        if not self.buffer:
            self.output.write(obj)
            self.output_width += width
            return
        last = self.buffer[-1]
        if not isinstance(last, _Text):
            last = _Text()
            self.buffer.append(last)
        last.add(obj, width)
        self.buffer_width += width
        self._break_outer_groups()

    def breakable(self, sep: str = " ") -> None:
        """A place to break the line; ``sep`` is written when it is not broken."""
        if self.group_stack[-1].want_break:
            self._newline()
        else:
            self.buffer.append(_Breakable(sep, self))
            self.buffer_width += len(sep)
            self._break_outer_groups()

    def break_(self) -> None:
        """An explicit line break, keeping the indentation."""
        group = self.group_queue.deq()
        if group is not None:
            self._break_one_group(group)
        self._newline()

    def _newline(self) -> None:
        self.flush()
        self.output.write("\n" + " " * self.indentation)
        self.output_width = self.indentation
        self.buffer_width = 0

    def begin_group(self, indent: int = 0, open: str = "") -> None:
        """Open a group (its breakables break together), writing ``open`` first."""
        if open:
            self.text(open)
        group = _Group(self.group_stack[-1].depth + 1)
        self.group_stack.append(group)
        self.group_queue.enq(group)
        self.indentation += indent

    def end_group(self, dedent: int = 0, close: str = "") -> None:
        """Close the innermost group, writing ``close`` after it."""
        self.indentation -= dedent
        group = self.group_stack.pop()
        if not group.breakables:
            self.group_queue.remove(group)
        if close:
            self.text(close)

    @contextlib.contextmanager
    def group(self, indent: int = 0, open: str = "", close: str = "") -> Iterator[None]:
        """``begin_group`` / ``end_group`` as a ``with`` block."""
        self.begin_group(indent, open)
        try:
            yield
        finally:
            self.end_group(indent, close)

    @contextlib.contextmanager
    def indent(self, indent: int) -> Iterator[None]:
        """Indent continuation lines by ``indent`` more inside the block."""
        self.indentation += indent
        try:
            yield
        finally:
            self.indentation -= indent

    def flush(self) -> None:
        """Write out whatever is buffered."""
        for item in self.buffer:
            self.output_width += item.output(self.output, self.output_width)
        self.buffer.clear()
        self.buffer_width = 0

    def _enumerate(self, seq: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """``enumerate``, stopping with ``, ...`` after ``max_seq_length`` items."""
        for index, item in enumerate(seq):
            if self.max_seq_length and index >= self.max_seq_length:
                self.text(",")
                self.breakable()
                self.text("...")
                return
            yield index, item

    # -- choosing a printer --------------------------------------------------------------------

    def pretty(self, obj: object) -> None:
        """Print ``obj`` with the printer its type calls for (cycles print as ``...``)."""
        obj_id = id(obj)
        cycle = obj_id in self.stack
        self.stack.append(obj_id)
        self.begin_group()
        try:
            self._printer_for(obj, obj_id)(obj, self, cycle)
        finally:
            self.end_group()
            self.stack.pop()

    def _printer_for(self, obj: object, obj_id: int) -> Printer:
        if obj_id in SINGLETONS:
            return SINGLETONS[obj_id]
        cls = _safe_getattr(obj, "__class__", None) or type(obj)
        for klass in getattr(cls, "__mro__", (cls,)):
            printer = self.type_pprinters.get(klass) or self._deferred(klass)
            if printer is not None:
                return printer
            if "_repr_pretty_" in klass.__dict__:
                method: Printer = getattr(klass, "_repr_pretty_")  # noqa: B009 - not typed
                if callable(method):
                    return method
            if (
                klass is not object
                and "__repr__" in klass.__dict__
                and callable(_safe_getattr(klass, "__repr__"))
            ):
                return REPR_PRINTER
        return DEFAULT_PRINTER

    def _deferred(self, klass: type) -> Printer | None:
        key = (_safe_getattr(klass, "__module__"), _safe_getattr(klass, "__name__"))
        printer = self.deferred_pprinters.pop(key, None)
        if printer is not None:
            self.type_pprinters[klass] = printer
        return printer


def _safe_getattr(obj: object, name: str, default: Any = None) -> Any:
    try:
        return getattr(obj, name, default)
    except Exception:
        return default
