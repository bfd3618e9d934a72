from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest

from agent.storage import Appendable, Fanout
from agent.syntax import ast
from agent.syntax.decode import attr, block, decode_block, decode_body, decode_value, encode, label
from agent.syntax.diag import DiagnosticsError, Pos
from agent.syntax.parser import parse_file
from agent.syntax.value import Duration, Secret
from agent.syntax.vm import Scope


@dataclass
class BasicAuth:
    username: str = attr(required=True)
    password: Secret | None = attr()


@dataclass
class Rule:
    action: Literal["replace", "keep", "drop"] = attr(default="replace")
    regex: str = attr(default="(.*)")
    source_labels: list[str] = attr(default=[])


@dataclass
class Clustering:
    enabled: bool = attr(default=False)


@dataclass
class TLS:
    insecure_skip_verify: bool = attr(default=False)


@dataclass
class Endpoint:
    url: str = attr(required=True)
    headers: dict[str, Secret] = attr(default={})
    tls_config: TLS | None = block()


@dataclass
class Arguments:
    targets: list[dict[str, str]] = attr(required=True)
    forward_to: list[Appendable] = attr(required=True)
    scrape_interval: Duration = attr(default=Duration("1m"))
    scrape_timeout: Duration = attr(default=Duration("10s"))
    sample_limit: int = attr(default=0)
    honor_labels: bool = attr(default=False)
    extra: Any = attr()
    basic_auth: BasicAuth | None = block()
    rule: list[Rule] = block()
    clustering: Clustering = block()
    endpoint: list[Endpoint] = block()
    oauth2_tls: TLS | None = block("oauth2.tls")

    def validate(self) -> None:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not be greater than scrape_interval")


@dataclass
class Inner:
    n: int = attr(default=0)

    def validate(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


@dataclass
class Outer:
    inner: list[Inner] = block()


@dataclass
class Holder:
    auth: BasicAuth | None = attr()
    rules: list[Rule] = attr(default=[])


class Receiver:
    def __init__(self) -> None:
        self.batches: list[Any] = []

    def append(self, batch: Any) -> None:
        self.batches.append(batch)


def body_of(src: str) -> list[ast.Stmt]:
    return parse_file(src, "cfg.alloy").body


def decode(src: str, schema: type = Arguments, **variables: Any) -> Any:
    return decode_body(body_of(src), schema, Scope(variables), Pos("cfg.alloy", 1, 1))


def errors(src: str, schema: type = Arguments, **variables: Any) -> list[tuple[int, int, str]]:
    with pytest.raises(DiagnosticsError) as exc:
        decode(src, schema, **variables)
    return [(d.pos.line, d.pos.col, d.message) for d in exc.value.diagnostics]


GOOD = """
targets = [{"__address__" = "a:9100", "job" = "node"}, {"__address__" = "b:9100"}]
forward_to = [recv]
scrape_interval = "15s"
sample_limit = "100"
basic_auth {
  username = "u"
  password = sys.env("SHOAL_TEST_PW")
}
rule {
  action = "drop"
  source_labels = ["job"]
}
rule {
  regex = "x"
}
endpoint {
  url = "http://a"
  headers = {"X-Token" = "t"}
  tls_config {
    insecure_skip_verify = true
  }
}
oauth2.tls {
  insecure_skip_verify = true
}
"""


def test_decodes_attributes_and_blocks(monkeypatch):
    monkeypatch.setenv("SHOAL_TEST_PW", "hunter2")
    recv = Receiver()
    args = decode(GOOD, recv=recv)
    assert args.targets == [{"__address__": "a:9100", "job": "node"}, {"__address__": "b:9100"}]
    assert args.forward_to == [recv]
    assert args.scrape_interval == 15.0 and isinstance(args.scrape_interval, Duration)
    assert args.scrape_timeout == 10.0
    assert args.sample_limit == 100
    assert args.honor_labels is False
    assert args.basic_auth == BasicAuth("u", Secret("hunter2"))
    assert args.rule == [Rule("drop", "(.*)", ["job"]), Rule("replace", "x", [])]
    assert args.clustering == Clustering(False)  # absent plain block: its defaults
    assert args.endpoint[0].headers == {"X-Token": Secret("t")}
    assert args.endpoint[0].tls_config == TLS(True)
    assert args.oauth2_tls == TLS(True)


def test_absent_blocks_get_defaults():
    args = decode("targets = []\nforward_to = []")
    assert args.basic_auth is None
    assert args.rule == []
    assert args.endpoint == []
    assert args.clustering == Clustering(False)
    assert args.extra is None


def test_defaults_are_not_shared_between_instances():
    r1 = decode_body(body_of('action = "keep"'), Rule, Scope())
    r2 = decode_body(body_of(""), Rule, Scope())
    r1.source_labels.append("x")
    assert r2.source_labels == []


def test_every_error_is_collected_and_positioned():
    src = """targets = 1
bogus = 2
scrape_interval = "15x"
basic_auth {
  password = 1
}
targets = []
nope {}
rule "label" {}
clustering = true
rule {
  action = "explode"
}
"""
    assert errors(src) == [
        (1, 11, "expected array, got number"),
        (2, 1, 'unrecognized attribute name "bogus"'),
        (3, 19, 'unknown unit "x" in duration "15x"'),
        (7, 1, 'attribute "targets" may only be set once'),
        (8, 1, 'unrecognized block name "nope"'),
        (9, 6, 'block "rule" does not support specifying labels'),
        (10, 1, '"clustering" must be a block, but is used as an attribute'),
        (5, 14, "expected secret or string, got number"),
        (4, 1, 'missing required attribute "username"'),
        (12, 12, 'expected one of "replace", "keep", "drop", got "explode"'),
        (1, 1, 'missing required attribute "forward_to"'),
    ]


def test_attribute_used_as_block_and_duplicate_single_block():
    src = "targets = []\nforward_to = []\nsample_limit {}\nclustering {}\nclustering {}\n"
    assert errors(src) == [
        (3, 1, '"sample_limit" must be an attribute, but is used as a block'),
        (5, 1, 'block "clustering" may only be specified once'),
    ]


def test_evaluation_errors_inside_attributes_are_reported_with_the_rest():
    src = 'targets = [{"a" = 1 + "x"}]\nforward_to = [missing.component.receiver]\nsample_limit = true\n'
    assert errors(src) == [
        (1, 23, "cannot add number and string: expected number, got string"),
        (2, 15, 'identifier "missing" does not exist'),
        (3, 16, "expected number, got bool"),
    ]


def test_capsule_fields_check_the_protocol():
    src = 'targets = []\nforward_to = [recv, "nope"]'
    assert errors(src, recv=Receiver()) == [
        (2, 14, '[1]: expected capsule("Appendable"), got string')
    ]
    args = decode("targets = []\nforward_to = [f]", f=Fanout([]))
    assert isinstance(args.forward_to[0], Fanout)


def test_validate_failures_are_positioned_at_the_block():
    src = 'targets = []\nforward_to = []\nscrape_interval = "5s"\nscrape_timeout = "10s"'
    assert errors(src) == [(1, 1, "scrape_timeout must not be greater than scrape_interval")]

    assert errors(
        "inner {\n n = 1\n}\n  inner {\n n = -1\n}",
        Outer,
    ) == [(4, 3, "n must not be negative")]


def test_decode_block_uses_the_block_position():
    f = parse_file('x "l" {\n  username = 1\n}\ny {\n}', "c.alloy")
    with pytest.raises(DiagnosticsError) as exc:
        decode_block(f.body[1], BasicAuth, Scope())  # type: ignore[arg-type]
    d = exc.value.diagnostics[0]
    assert (d.pos.line, d.pos.col, d.message) == (4, 1, 'missing required attribute "username"')


def test_object_values_decode_into_dataclasses():
    h = decode('auth = {username = "u", password = "p"}\nrules = [{action = "keep"}]', Holder)
    assert h.auth == BasicAuth("u", Secret("p"))
    assert h.rules == [Rule("keep", "(.*)", [])]
    assert errors('auth = {user = "u"}', Holder) == [(1, 8, 'unrecognized field "user"')]
    assert errors("auth = {}", Holder) == [(1, 8, 'missing required field "username"')]
    assert errors('rules = [{action = "x"}]', Holder) == [
        (1, 9, '[0].action: expected one of "replace", "keep", "drop", got "x"')
    ]


def test_null_attribute_gives_the_zero_value():
    args = decode("targets = null\nforward_to = []\nsample_limit = null")
    assert args.targets == [] and args.sample_limit == 0


def test_decode_value():
    assert decode_value("90s", Duration) == 90.0
    with pytest.raises(DiagnosticsError) as exc:
        decode_value("1 minute", Duration, Pos("f", 2, 3))
    d = exc.value.diagnostics[0]
    assert (d.pos.line, d.pos.col) == (2, 3)
    assert d.message == 'unknown unit " minute" in duration "1 minute"'  # Go's own wording


def test_encode_gives_plain_values_and_keeps_secrets_wrapped(monkeypatch):
    monkeypatch.setenv("SHOAL_TEST_PW", "hunter2")
    recv = Receiver()
    out = encode(decode(GOOD, recv=recv))
    assert out["scrape_interval"] == "15s"
    assert out["scrape_timeout"] == "10s"
    assert out["basic_auth"]["username"] == "u"
    assert isinstance(out["basic_auth"]["password"], Secret)
    assert out["rule"][0] == {"action": "drop", "regex": "(.*)", "source_labels": ["job"]}
    assert out["oauth2.tls"] == {"insecure_skip_verify": True}
    assert out["forward_to"] == [recv]
    assert "hunter2" not in repr(out)


@dataclass
class Target:
    name: str = label()
    address: str = attr(required=True)


@dataclass
class Exporter:
    target: list[Target] = block()
    single: Target | None = block()


def test_labelled_nested_blocks():
    ex = decode(
        'target "a" {\n address = "x:1"\n}\ntarget "b" {\n address = "y:1"\n}\nsingle "s" {\n address = "z"\n}',
        Exporter,
    )
    assert ex.target == [Target("a", "x:1"), Target("b", "y:1")]
    assert ex.single == Target("s", "z")
    assert encode(ex)["target"][0] == {"label": "a", "address": "x:1"}
    assert errors('target {\n address = "x"\n}', Exporter) == [
        (1, 1, 'block "target" requires non-empty label')
    ]


@dataclass
class Strict:
    n: int = attr(default=0)

    def validate(self) -> None:
        if self.n == 1:
            raise RuntimeError("not a ValueError, still reported")


def test_any_validate_failure_is_a_positioned_error():
    assert errors("n = 1", Strict) == [(1, 1, "not a ValueError, still reported")]
