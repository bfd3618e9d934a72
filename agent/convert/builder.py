"""A small builder of Alloy blocks, emitting text in the shape Alloy's converter does.

The converter's output must equal ``alloy convert``'s byte for byte. Alloy
builds token streams (one statement a line, objects one field a line,
arrays inline) and pretty-prints them; we emit the same line structure as
text and hand it to ``agent.syntax.printer.format_source``, which aligns and
spaces it exactly as Alloy's printer does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.syntax.printer import format_source
from agent.syntax.scanner import is_valid_identifier
from agent.syntax.strings import quote
from agent.syntax.value import format_duration_ns


@dataclass(frozen=True)
class Raw:
    """Alloy source inserted as is: a reference such as ``discovery.file.x.targets``."""

    text: str


@dataclass(frozen=True)
class GoDuration:
    """A duration in nanoseconds, printed as Go's ``time.Duration.String`` (``1m0s``)."""

    ns: int

    def __str__(self) -> str:
        return format_duration_ns(self.ns)


@dataclass
class Block:
    name: str
    label: str = ""
    nodes: list[tuple[str, Any] | Block] = field(default_factory=list)

    def attr(self, name: str, value: Any) -> None:
        self.nodes.append((name, value))

    def block(self, name: str, label: str = "") -> Block:
        b = Block(name, label)
        self.nodes.append(b)
        return b

    def text(self) -> str:
        head = self.name + " " + (quote(self.label) + " " if self.label else "") + "{\n"
        body = "\n".join(
            n.text() if isinstance(n, Block) else f"{n[0]} = {encode(n[1])}" for n in self.nodes
        )
        return head + body + "\n}"


def encode(value: Any) -> str:
    """A Python value as Alloy source, the way Alloy's builder tokenizes Go values."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, GoDuration):
        return quote(str(value))
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        fields = "".join(
            f"{k if is_valid_identifier(k) else quote(k)} = {encode(value[k])},\n" for k in sorted(value)
        )
        return "{\n" + fields + "}"
    raise TypeError(f"cannot encode {type(value).__name__} as Alloy")


def targets(items: list[Raw | dict[str, str]]) -> Raw:
    """Alloy's converter spelling of a target list: one ``[{...}]`` per static target,
    several sources joined with ``array.concat``."""
    parts = [it.text if isinstance(it, Raw) else "[" + encode(it) + "]" for it in items]
    if not parts:
        return Raw("[]")
    if len(parts) == 1:
        return Raw(parts[0])
    return Raw("array.concat(\n" + ",\n".join(parts) + ",\n)")


def render(blocks: list[Block]) -> str:
    if not blocks:
        return ""
    return format_source("\n".join(b.text() for b in blocks))
