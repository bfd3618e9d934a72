"""Building the component graph: order, and every static error at its position."""

from __future__ import annotations

import pytest

from agent.runtime import graph
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_file
from tests.runtime.components import make_registry


def build(src: str) -> graph.Graph:
    return graph.build([parse_file(src, "main.alloy")], make_registry())


def errors(src: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as exc:
        build(src)
    return [str(d) for d in exc.value.diagnostics]


def test_dependencies_come_first_whatever_the_source_order():
    g = build(
        """
test.pass "c" { input = test.pass.b.value }
test.pass "b" { input = test.source.a.value }
test.source "a" { value = 1 }
test.num "free" { count = 1 }
"""
    )
    order = g.order
    assert order.index("test.source.a") < order.index("test.pass.b") < order.index("test.pass.c")
    assert set(order) == {"test.source.a", "test.pass.b", "test.pass.c", "test.num.free"}
    assert g.dependants("test.source.a") == ["test.pass.b"]
    assert g.components["test.pass.c"].refs[0].path == ["value"]
    assert g.referenced_by()["test.pass.b"] == ["test.pass.c"]


def test_stdlib_references_are_not_components():
    g = build('test.pass "a" { input = constants.os }\n')
    assert g.components["test.pass.a"].deps == set()


def test_cycle_is_reported_at_a_block_of_the_cycle():
    errs = errors(
        """test.pass "a" { input = test.pass.b.value }
test.pass "b" { input = test.pass.a.value }
"""
    )
    assert errs == ["main.alloy:1:1: cycle detected: test.pass.a -> test.pass.b -> test.pass.a"]


def test_self_reference_is_an_error():
    errs = errors('test.pass "a" { input = test.pass.a.value }\n')
    assert errs == ["main.alloy:1:25: component 'test.pass.a' cannot reference itself"]


def test_unknown_component_reference_is_positioned():
    errs = errors(
        """test.source "a" { value = 1 }
test.pass "b" {
  input = test.source.nope.value
}
"""
    )
    assert errs == ["main.alloy:3:11: component 'test.source.nope' does not exist or is out of scope"]


def test_unknown_export_is_positioned():
    errs = errors('test.source "a" { value = 1 }\ntest.pass "b" { input = test.source.a.values }\n')
    assert errs == [
        "main.alloy:2:25: component 'test.source.a' does not export 'values' (it exports value)"
    ]


def test_unknown_identifier_and_component_name_and_duplicates_all_reported_together():
    errs = errors(
        """test.source "a" { value = 1 }
test.source "a" { value = 2 }
test.nothing "x" { }
test.pass "b" { input = nowhere.at.all }
test.num { count = 1 }
"""
    )
    assert errs == [
        "main.alloy:2:1: component 'test.source.a' already declared at main.alloy:1:1",
        "main.alloy:3:1: unrecognized component name 'test.nothing'",
        "main.alloy:4:25: identifier 'nowhere.at.all' does not exist",
        "main.alloy:5:1: component 'test.num' must have a label",
    ]


def test_settings_blocks_are_not_components():
    g = build('logging {\n  level = "debug"\n}\ntest.num "a" { count = 1 }\n')
    assert list(g.config_blocks) == ["logging"]
    assert list(g.components) == ["test.num.a"]
    assert errors('logging "x" { }\n') == ["main.alloy:1:9: block 'logging' does not take a label"]


def test_top_level_attribute_is_an_error():
    assert errors("x = 1\n") == [
        "main.alloy:1:1: unexpected attribute 'x' at the top level; only blocks are allowed here"
    ]


def test_files_of_a_folder_form_one_graph():
    reg = make_registry()
    a = parse_file('test.source "a" { value = 1 }\n', "a.alloy")
    b = parse_file('test.pass "b" { input = test.source.a.value }\n', "b.alloy")
    g = graph.build([a, b], reg)
    assert g.order == ["test.source.a", "test.pass.b"]
