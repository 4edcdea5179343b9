"""Recording a run's outputs into a notebook (``loom run -o OUT.ipynb`` / ``--inplace``).

:class:`NotebookRecorder` turns iopub messages into nbformat v4 outputs the way
nbclient does: consecutive ``stream`` outputs of one name are merged,
``clear_output`` (with ``wait``) and ``update_display_data`` are honoured, and
each run cell gets the ``execution_count`` of its ``execute_reply``. Cells that
did not run keep what they had. The notebook is written atomically (a temporary
file renamed over the target), so an interrupted write never truncates it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from kernel.protocol import JSONDict, Message

from ._source import BatchInputError, Document, nbformat_module

__all__ = ["NotebookRecorder", "output_from_message"]


def output_from_message(message: Message) -> JSONDict | None:
    """The nbformat v4 output for an iopub message, or None if it is not an output."""
    content = message.content
    match message.msg_type:
        case "stream":
            return {
                "output_type": "stream",
                "name": str(content.get("name", "stdout")),
                "text": str(content.get("text", "")),
            }
        case "display_data":
            return {
                "output_type": "display_data",
                "data": dict(content.get("data", {})),
                "metadata": dict(content.get("metadata", {})),
            }
        case "execute_result":
            return {
                "output_type": "execute_result",
                "data": dict(content.get("data", {})),
                "metadata": dict(content.get("metadata", {})),
                "execution_count": content.get("execution_count"),
            }
        case "error":
            return {
                "output_type": "error",
                "ename": str(content.get("ename", "")),
                "evalue": str(content.get("evalue", "")),
                "traceback": [str(line) for line in content.get("traceback", [])],
            }
    return None


def display_id_of(message: Message) -> str | None:
    """The ``transient.display_id`` of a display message, if any."""
    value = message.content.get("transient", {}).get("display_id")
    return value if isinstance(value, str) else None


class NotebookRecorder:
    """Holds the notebook being written and files each output under its cell."""

    def __init__(self, notebook: dict[str, Any]) -> None:
        self.notebook = notebook
        self._displays: dict[str, list[JSONDict]] = {}
        self._clear_pending = False

    @classmethod
    def for_document(cls, document: Document) -> NotebookRecorder:
        """Record into the document's own notebook, or a new one built from script cells."""
        if document.notebook is not None:
            return cls(document.notebook)
        v4 = nbformat_module().v4
        make = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell, "raw": v4.new_raw_cell}
        notebook = v4.new_notebook()
        notebook.cells = [make[cell.kind](cell.source) for cell in document.cells]
        return cls(notebook)

    def _outputs(self, index: int) -> list[JSONDict]:
        outputs: list[JSONDict] = self.notebook["cells"][index]["outputs"]
        return outputs

    def begin(self, index: int) -> None:
        """Forget the cell's previous outputs and execution count."""
        cell = self.notebook["cells"][index]
        cell["outputs"] = []
        cell["execution_count"] = None
        self._clear_pending = False

    def finish(self, index: int, execution_count: object) -> None:
        """Store the ``execute_reply``'s execution count (None when there was no reply)."""
        count = execution_count if isinstance(execution_count, int) else None
        self.notebook["cells"][index]["execution_count"] = count

    def add(self, index: int, message: Message) -> None:
        """File one iopub message of cell ``index`` (non-outputs are ignored)."""
        if message.msg_type == "clear_output":
            if message.content.get("wait"):
                self._clear_pending = True
            else:
                self._outputs(index).clear()
            return
        if message.msg_type == "update_display_data":
            self._update_display(message)
            return
        output = output_from_message(message)
        if output is None:
            return
        outputs = self._outputs(index)
        if self._clear_pending:
            outputs.clear()
            self._clear_pending = False
        if self._merge_stream(outputs, output):
            return
        outputs.append(output)
        display_id = display_id_of(message)
        if display_id is not None:
            self._displays.setdefault(display_id, []).append(output)

    @staticmethod
    def _merge_stream(outputs: list[JSONDict], output: JSONDict) -> bool:
        """Append a stream's text to the previous output of the same stream, if it is one."""
        if output["output_type"] != "stream" or not outputs:
            return False
        last = outputs[-1]
        if last.get("output_type") != "stream" or last.get("name") != output["name"]:
            return False
        last["text"] = str(last.get("text", "")) + output["text"]
        return True

    def _update_display(self, message: Message) -> None:
        display_id = display_id_of(message)
        for output in self._displays.get(display_id or "", []):
            output["data"] = dict(message.content.get("data", {}))
            output["metadata"] = dict(message.content.get("metadata", {}))

    def set_kernel_metadata(self, language_info: object, kernelspec: JSONDict | None) -> None:
        """Record the kernel's ``language_info``; ``kernelspec`` only for new notebooks."""
        metadata = self.notebook.setdefault("metadata", {})
        if isinstance(language_info, dict) and language_info:
            metadata["language_info"] = language_info
        if kernelspec is not None and "kernelspec" not in metadata:
            metadata["kernelspec"] = kernelspec

    def write(self, path: Path) -> None:
        """Write the notebook to ``path`` atomically; :class:`BatchInputError` on failure."""
        nbformat = nbformat_module()
        text = nbformat.writes(nbformat.from_dict(self.notebook))
        target = path.resolve()
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            raise BatchInputError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
            os.chmod(tmp, _mode_for(target))
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise BatchInputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets 0666 minus the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
