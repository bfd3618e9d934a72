"""Relabeling against Prometheus' own test table, plus the edges the table leaves out."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from agent import labels as L
from agent.relabel import Rule, is_valid_label_name, process, validate_all
from tests.conftest import CONFORMANCE

RELABEL = CONFORMANCE / "relabel"
CASES = yaml.safe_load((RELABEL / "cases.yaml").read_text())["cases"]
VALIDATION = yaml.safe_load((RELABEL / "validation.yaml").read_text())


def _rule(cfg: dict, scheme: str = "utf8") -> Rule:
    return Rule(
        source_labels=list(cfg.get("source_labels") or []),
        separator=cfg.get("separator", ";"),
        regex=cfg.get("regex", "(.*)"),
        modulus=int(cfg.get("modulus", 0)),
        target_label=cfg.get("target_label", ""),
        replacement=cfg.get("replacement", "$1"),
        action=cfg.get("action", "replace"),
        name_validation=scheme,
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_case(case: dict) -> None:
    rules = [_rule(c) for c in case["configs"]]
    for r in rules:
        r.validate()
    got = process(L.from_dict(case["input"]), rules)
    if case["output"] is None:
        assert got is None
    else:
        assert got == L.from_dict(case["output"])


def test_all_34_cases_present() -> None:
    assert len(CASES) == 34


@pytest.mark.parametrize("entry", VALIDATION["config_validate"], ids=lambda e: str(e["config"]))
def test_validation_verdicts(entry: dict) -> None:
    cfg = dict(entry["config"])
    scheme = cfg.pop("name_validation_scheme")
    # Go zero values for every field not set (no defaults applied here).
    rule = Rule(
        source_labels=list(cfg.get("source_labels") or []),
        separator=cfg.get("separator", ";"),
        regex=cfg.get("regex", "(.*)"),
        modulus=int(cfg.get("modulus", 0)),
        target_label=cfg.get("target_label", ""),
        replacement=cfg.get("replacement", ""),
        action=cfg.get("action", ""),
        name_validation=scheme,
    )
    if entry["expected_error"] is None:
        rule.validate()
    else:
        with pytest.raises(ValueError, match=".*") as info:
            rule.validate()
        assert entry["expected_error"] in str(info.value)


@pytest.mark.parametrize(
    "entry", VALIDATION["legacy_target_label_validity"], ids=lambda e: e["target_label"]
)
def test_legacy_target_label_pattern(entry: dict) -> None:
    rule = Rule(source_labels=["a"], target_label=entry["target_label"], name_validation="legacy")
    if entry["valid"]:
        rule.validate()
    else:
        with pytest.raises(ValueError, match="invalid 'target_label'"):
            rule.validate()


def test_validation_rejects_bad_regex_unknown_action_and_extra_fields() -> None:
    with pytest.raises(ValueError, match="invalid regex"):
        Rule(source_labels=["a"], regex="(a", target_label="b").validate()
    with pytest.raises(ValueError, match="unknown relabel action"):
        Rule(action="rename", target_label="b").validate()
    with pytest.raises(ValueError, match="requires non-zero modulus"):
        Rule(action="hashmod", target_label="b").validate()
    with pytest.raises(ValueError, match="requires only 'regex'"):
        Rule(action="labeldrop", source_labels=["a"], regex="x").validate()
    with pytest.raises(ValueError, match="requires only 'source_labels'"):
        Rule(action="keepequal", source_labels=["a"], target_label="b", regex="x").validate()
    with pytest.raises(ValueError, match="'replacement' can not be set"):
        Rule(action="lowercase", source_labels=["a"], target_label="b", replacement="x").validate()
    with pytest.raises(ValueError, match="rule 2: relabel action cannot be empty"):
        validate_all([Rule(source_labels=["a"], target_label="b"), Rule(action="")])


def test_go_expand_rules() -> None:
    lab = L.from_dict({"a": "foo-bar"})

    def get(repl: str) -> str:
        rule = Rule(
            source_labels=["a"], regex="(?P<x>f)(o+)-(.*)", target_label="t", replacement=repl
        )
        return L.get(process(lab, [rule]) or (), "t")

    assert get("$1x") == ""  # group named "1x" does not exist
    assert get("${1}x") == "fx"
    assert get("$x-$2") == "f-oo"
    assert get("$$1") == "$1"
    assert get("a$") == "a$"  # malformed reference is literal
    assert get("${3}${9}") == "bar"  # missing group is empty
    assert get("$0") == "foo-bar"
    assert get("${01}") == ""  # leading zero: a name, not a number


def test_replace_skips_invalid_target_under_legacy_and_sets_under_utf8() -> None:
    lab = L.from_dict({"a": "x.y"})
    rule = dict(source_labels=["a"], regex="(.*)", target_label="${1}", replacement="v")
    assert process(lab, [Rule(**rule, name_validation="legacy")]) == lab
    assert L.get(process(lab, [Rule(**rule)]) or (), "x.y") == "v"


def test_hashmod_matches_md5_low_bytes() -> None:
    got = process(
        L.from_dict({"a": "foo"}),
        [Rule(source_labels=["a"], action="hashmod", modulus=7, target_label="h")],
    )
    want = int.from_bytes(hashlib.md5(b"foo").digest()[8:], "big") % 7
    assert L.get(got or (), "h") == str(want)


def test_keep_drop_literal_alternation_and_general_regex_agree() -> None:
    lab = L.from_dict({"__name__": "up", "job": "node"})
    keep = lambda rx: process(lab, [Rule(source_labels=["__name__"], regex=rx, action="keep")])  # noqa: E731
    assert keep("up|down") == lab
    assert keep("(up|down)") == lab
    assert keep("u") is None  # anchored
    assert keep("u.") == lab
    assert keep("x|y") is None
    assert keep("") is None


def test_multiple_sources_missing_label_is_empty() -> None:
    lab = L.from_dict({"a": "1"})
    got = process(
        lab,
        [Rule(source_labels=["a", "zz", "a"], regex="(.*)", target_label="j", replacement="<$1>")],
    )
    assert L.get(got or (), "j") == "<1;;1>"


def test_setting_empty_value_deletes_and_labelmap_keeps_originals() -> None:
    lab = L.from_dict({"__meta_x": "1", "a": "2"})
    got = process(
        lab,
        [
            Rule(action="labelmap", regex="__meta_(.*)", replacement="m_$1"),
            Rule(source_labels=["zz"], target_label="a", replacement="$1"),
        ],
    )
    assert got == (("__meta_x", "1"), ("m_x", "1"))


def test_non_ascii_values_through_re2() -> None:
    lab = L.from_dict({"a": "é-ü"})
    got = process(
        lab, [Rule(source_labels=["a"], regex="(.)-(.)", target_label="b", replacement="$2$1")]
    )
    assert L.get(got or (), "b") == "üé"


def test_label_name_validity() -> None:
    assert is_valid_label_name("a.b")
    assert not is_valid_label_name("a.b", "legacy")
    assert not is_valid_label_name("")


@pytest.mark.parametrize(
    "rx", ["ab.*", "ab.+", "ab(.*)", "ab(.+)", "a|b", "(a|bc)", "x[0-9]+", ".+"]
)
@pytest.mark.parametrize("value", ["", "a", "ab", "abc", "ab\nc", "bc", "x12", "xab"])
def test_fast_matchers_agree_with_re2(rx: str, value: str) -> None:
    from agent.relabel import Matcher, compile_regex

    m = Matcher(rx)
    raw = compile_regex(rx)
    b = value.encode()
    from re2 import _re2

    spans = raw.Match(_re2.RE2.Anchor.ANCHOR_BOTH, b, 0, len(b))
    want = None
    if spans[0][0] >= 0:
        want = tuple(b[x:y].decode() if x >= 0 else "" for x, y in spans)
    assert m.groups(value) == want
    assert m.test(value) == (want is not None)
