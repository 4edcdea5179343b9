"""Launcher status lines (pure): what a launcher says, and how ``Cluster`` reads it back.

A controller prints ``loom launcher {"state": ..., "summary": ...}`` on its stdout
whenever its launcher's state changes; ``Cluster`` keeps the controller's output and
takes the last such line to explain a start that does not finish (a job still pending,
a launcher command that failed and what it printed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["STATES", "STATUS_PREFIX", "LauncherStatus", "last_status"]

STATUS_PREFIX = "loom launcher"

State = Literal["starting", "pending", "running", "failed", "stopped"]
STATES: tuple[State, ...] = ("starting", "pending", "running", "failed", "stopped")


@dataclass(frozen=True, slots=True)
class LauncherStatus:
    """One report: ``state``, a one-line ``summary`` (``"slurm job 17 PENDING
    (Resources)"``), for a failure the launcher command's last ``output``, and the
    ``log`` file where its output goes (read for a launcher that hangs)."""

    state: State
    summary: str
    output: str = ""
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "summary": self.summary,
            "output": self.output,
            "log": self.log,
        }

    @classmethod
    def from_dict(cls, data: object) -> LauncherStatus | None:
        if not isinstance(data, dict):
            return None
        state, summary = data.get("state"), data.get("summary")
        output, log = data.get("output", ""), data.get("log", "")
        if state not in STATES or not isinstance(summary, str):
            return None
        if not isinstance(output, str) or not isinstance(log, str):
            return None
        return cls(state, summary, output, log)

    def describe(self, output: str = "") -> str:
        """The summary, then the output (this status's, else ``output``) below it."""
        printed = (self.output or output).strip()
        return f"{self.summary}; it printed:\n{printed}" if printed else self.summary


def last_status(text: str) -> LauncherStatus | None:
    """The last well-formed status line in ``text`` (a controller's output), if any."""
    for line in reversed(text.splitlines()):
        if not line.startswith(STATUS_PREFIX + " "):
            continue
        try:
            status = LauncherStatus.from_dict(json.loads(line[len(STATUS_PREFIX) + 1 :]))
        except ValueError:
            continue
        if status is not None:
            return status
    return None
