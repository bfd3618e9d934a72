"""docs/configuration-reference.md and the components' Arguments schemas cannot drift apart.

Both ways: every argument and block a registered component accepts has a row under the
component's heading, with the default the code uses; and every row names an argument that
exists, whose documented default decodes (as Alloy would) to the code's default. A failure
prints the exact row to add or fix, so a new component merged from another branch only
needs its rows pasted and described.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from agent.components import registry
from agent.storage import Appendable
from agent.syntax import decode, parser, vm
from agent.syntax.value import Duration, Secret
from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "configuration-reference.md"
ROW = re.compile(r"^\| `([^`]+)` \|([^|]*)\|([^|]*)\|")


@dataclasses.dataclass(frozen=True)
class Arg:
    path: str  # "endpoint > queue_config > capacity"
    type: Any
    block: bool
    required: bool
    repeated: bool
    default: Any  # dataclasses.MISSING when there is none


def alloy_type(typ: Any) -> str:
    """The type as Alloy's documentation spells it."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return " or ".join(alloy_type(a) for a in members)
    if origin is typing.Literal:
        return "string"
    if origin is list:
        return f"list({alloy_type(args[0])})"
    if origin is dict:
        return f"map({alloy_type(args[1])})"
    names = {
        str: "string",
        int: "number",
        float: "number",
        bool: "bool",
        Duration: "duration",
        Secret: "secret",
        Appendable: "list(MetricsReceiver)",
    }
    if typ in names:
        return names[typ]
    if origin is list and args[0] is Appendable:
        return "list(MetricsReceiver)"
    raise AssertionError(f"no Alloy name for the type {typ!r}: teach alloy_type")


def alloy_literal(value: Any) -> str:
    """A default as an Alloy expression, as the reference writes it."""
    if isinstance(value, Duration):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(alloy_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r} = {alloy_literal(v)}" for k, v in value.items()) + "}"
    raise AssertionError(f"no Alloy literal for the default {value!r}")


def arguments(cls: type, prefix: str = "") -> list[Arg]:
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    out = []
    for fld in decode.schema_of(cls).fields:
        path = prefix + fld.name
        default = defaults.get(fld.attr_name, dataclasses.MISSING)
        if default is None or fld.required:
            default = dataclasses.MISSING
        if fld.kind == "block":
            out.append(
                Arg(path, fld.block_type, True, fld.required, fld.repeated, dataclasses.MISSING)
            )
            out.extend(arguments(fld.block_type, path + " > "))
        else:
            out.append(Arg(path, fld.type, False, fld.required, False, default))
    return out


def expected_row(arg: Arg) -> str:
    if arg.block:
        kind = "block, repeatable" if arg.repeated else "block"
        return f"| `{arg.path}` | {kind} | | DESCRIBE |"
    default = (
        "required"
        if arg.required
        else ("" if arg.default is dataclasses.MISSING else f"`{alloy_literal(arg.default)}`")
    )
    return f"| `{arg.path}` | {alloy_type(arg.type)} | {default} | DESCRIBE |"


def code_side() -> dict[str, dict[str, Arg]]:
    reg = registry()
    out = {}
    for name in reg.names():
        ct = reg.get(name)
        assert ct is not None
        out[name] = {a.path: a for a in arguments(ct.arguments)} if ct.arguments else {}
    return out


def doc_side(text: str) -> dict[str, dict[str, tuple[str, str]]]:
    """``### component`` headings and their rows: path -> (type, default)."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = out.setdefault(line[4:].strip().strip("`"), {})
        elif line.startswith("## "):
            current = None
        elif current is not None and (m := ROW.match(line)):
            current[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return out


def decoded_default(cell: str, typ: Any) -> Any:
    expr = cell.strip("`")
    return decode.decode_value(vm.evaluate(parser.parse_expression(expr), vm.Scope()), typ)


CODE = code_side()
DOCS = doc_side(REFERENCE.read_text())


@pytest.mark.parametrize("component", sorted(CODE))
def test_every_argument_in_code_is_documented(component):
    assert component in DOCS, (
        f"{REFERENCE.name} has no section `### {component}`; add it with these rows:\n"
        + "\n".join(expected_row(a) for a in CODE[component].values())
    )
    missing = [a for path, a in CODE[component].items() if path not in DOCS[component]]
    assert not missing, f"{REFERENCE.name}, under `### {component}`, add:\n" + "\n".join(
        expected_row(a) for a in missing
    )


@pytest.mark.parametrize("component", sorted(DOCS))
def test_every_documented_argument_exists_with_its_default(component):
    assert component in CODE, f"{REFERENCE.name} documents `{component}`, which is not registered"
    problems = []
    for path, (typ, default) in DOCS[component].items():
        arg = CODE[component].get(path)
        if arg is None:
            problems.append(f"`{path}` is not an argument of {component}: remove its row")
            continue
        row = expected_row(arg)
        want_type, want_default = ROW.match(row).group(2).strip(), ROW.match(row).group(3).strip()
        if typ != want_type:
            problems.append(f"`{path}`: type {typ!r}, the code's is {want_type!r}: {row}")
        if arg.block or arg.required or arg.default is dataclasses.MISSING:
            if default != want_default:
                problems.append(f"`{path}`: default {default!r}, should be {want_default!r}: {row}")
            continue
        try:
            value = decoded_default(default, arg.type)
        except Exception as exc:  # noqa: BLE001 - any failure to decode is the report
            problems.append(f"`{path}`: default {default!r} does not decode ({exc}): {row}")
            continue
        if value != arg.default:
            problems.append(
                f"`{path}`: default {default} is {value!r}, the code's {arg.default!r}: {row}"
            )
    assert not problems, f"{REFERENCE.name}, `### {component}`:\n" + "\n".join(problems)


def test_the_checker_sees_a_wrong_default_and_a_missing_row(tmp_path: Path):
    """The two checks above can fail: a changed default and a dropped row are both caught."""
    text = REFERENCE.read_text()
    ours = doc_side(
        text.replace(
            '| `scrape_interval` | duration | `"1m"`', '| `scrape_interval` | duration | `"2m"`'
        )
    )
    (typ, default) = ours["prometheus.scrape"]["scrape_interval"]
    assert (
        decoded_default(default, Duration) != CODE["prometheus.scrape"]["scrape_interval"].default
    )
    dropped = doc_side("\n".join(ln for ln in text.splitlines() if not ln.startswith("| `job_name`")))
    assert (
        "job_name" not in dropped["prometheus.scrape"] and "job_name" in CODE["prometheus.scrape"]
    )
