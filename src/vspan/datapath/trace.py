"""Trace trees: what the pipeline decided about one frame, stage by stage.

Stages report through ``tracer.report(...)`` guarded by ``tracer.enabled`` so
a disabled tracer costs one attribute read (the OVS ``xlate_report`` pattern).
``vspan trace`` and the datapath run the same pipeline code; only the tracer
differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TraceNode:
    """One line of a trace; children are indented under it."""

    stage: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    children: list[TraceNode] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"stage": self.stage, "message": self.message}
        if self.data:
            out["data"] = self.data
        if self.children:
            out["children"] = [c.as_dict() for c in self.children]
        return out


class Tracer:
    """Collects a trace tree. ``NULL_TRACER`` is the disabled one."""

    __slots__ = ("_stack", "enabled", "root")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.root = TraceNode("frame", "")
        self._stack: list[TraceNode] = [self.root]

    def report(self, stage: str, message: str, **data: Any) -> TraceNode:
        """Add a line under the current node and return it."""
        node = TraceNode(stage, message, dict(data))
        self._stack[-1].children.append(node)
        return node

    def push(self, node: TraceNode) -> None:
        """Make ``node`` the parent of following reports."""
        self._stack.append(node)

    def pop(self) -> None:
        """Return to the previous parent."""
        if len(self._stack) > 1:
            self._stack.pop()

    def render(self) -> str:
        """Human-readable indented text."""
        lines: list[str] = []
        if self.root.message:
            lines.append(self.root.message)

        def walk(node: TraceNode, depth: int) -> None:
            for child in node.children:
                lines.append(f"{'  ' * depth}{child.stage:<10} {child.message}")
                walk(child, depth + 1)

        walk(self.root, 0)
        return "\n".join(lines)


class _NullTracer(Tracer):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(enabled=False)

    def report(self, stage: str, message: str, **data: Any) -> TraceNode:
        return self.root  # never called on the fast path: callers check .enabled

    def push(self, node: TraceNode) -> None:
        return None


NULL_TRACER: Tracer = _NullTracer()
