"""Selector syntax as apimachinery parses it: what loads, and why the rest does not."""

from __future__ import annotations

import pytest

from agent.discovery.selectors import (
    SelectorSyntaxError,
    check_field_selector,
    check_label_selector,
)


@pytest.mark.parametrize("text", [
    "", "app", "!app", "app=web", "app==web", "app!=web", "app=", "tier in (web, api)", "tier notin (a)",
    "app.kubernetes.io/name=checkout,pod-template-hash!=7d9f8c6b5", "example.com/x in (a,b),!y",
    "replicas>2", "replicas < 10", " app = web , tier in ( a , b ) ",
])
def test_label_selectors_that_parse(text: str) -> None:
    check_label_selector(text)


@pytest.mark.parametrize("text,reason", [
    ("app=web,", "empty requirement"),
    ("app==", None),
    ("-app=web", "invalid label key '-app'"),
    ("app=web!", "cannot parse"),
    ("app=-web", "invalid label value '-web'"),
    ("tier in ()", "can't be empty"),
    ("tier in (a", "unbalanced"),
    ("a)", "unbalanced"),
    ("Example.com/x=y", "invalid label key"),
    ("x" * 64 + "=y", "longer than 63"),
    ("app=" + "v" * 64, "invalid label value"),
    ("replicas>two", "must be an integer"),
    ("app web", "cannot parse"),
])
def test_label_selectors_that_do_not(text: str, reason: str | None) -> None:
    if reason is None:  # "app==" is app equal to the empty value: valid
        check_label_selector(text)
        return
    with pytest.raises(SelectorSyntaxError, match=reason):
        check_label_selector(text)


@pytest.mark.parametrize("text", [
    "", "spec.nodeName=worker-a", "spec.nodeName==worker-a", "status.phase!=Failed,spec.nodeName=n1",
    "metadata.name=a\\,b", "metadata.name=",
])
def test_field_selectors_that_parse(text: str) -> None:
    check_field_selector(text)


@pytest.mark.parametrize("text,reason", [
    ("spec.nodeName", "cannot understand"),
    ("=worker-a", "has no field name"),
    ("spec.nodeName=a,status.phase", "cannot understand"),
    ("metadata.name=a\\", "trailing backslash"),
])
def test_field_selectors_that_do_not(text: str, reason: str) -> None:
    with pytest.raises(SelectorSyntaxError, match=reason):
        check_field_selector(text)
