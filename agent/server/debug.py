"""The answers behind the debug pages: targets, why a target is not scraped, remote write, relabel traces.

The runtime knows components only as nodes with arguments, exports and debug
info; this module joins them into the questions an operator asks at 3 a.m.
Targets are assembled from every ``prometheus.scrape``'s debug info and from
re-running each upstream ``discovery.relabel``'s rules one rule at a time, so
a dropped target names the rule that dropped it. Everything here only reads;
user input is bounded before it is used, and results are paged so a list of
10,000 targets is never sent or rendered whole.
"""

from __future__ import annotations

import math
import re
import time
import weakref
from dataclasses import dataclass
from typing import Any

from agent import labels as lbl
from agent import relabel
from agent.components._common import rules as rule_list
from agent.components._common import targets_to_labels
from agent.runtime.controller import Controller, Node
from agent.storage import is_stale_nan

MAX_QUERY = 1_000  # characters of a search or why-not question
MAX_PLAYGROUND = 16_384  # characters of pasted labels
MAX_LABELS = 200  # label pairs in a pasted set
MAX_PAGE = 500  # targets in one page
RELABEL_COMPONENTS = ("discovery.relabel", "prometheus.relabel")
# How long one assembled target list answers every page and tab: polling clients
# then cost one assembly per second at most, however many there are.
SNAPSHOT_SECONDS = 1.0
# A remote-write rejection older than this no longer explains a missing series.
REJECTION_SECONDS = 300.0


class BadInput(ValueError):
    """A question the API refuses, with the reason shown to the user."""


# ------------------------------------------------------------------ relabel trace


def trace(labels: lbl.Labels, rules: list[relabel.Rule]) -> list[dict[str, Any]]:
    """The label set after each rule; stops at the rule that drops it.

    Runs the engine one rule at a time, so the trace is exactly what
    ``relabel.process`` does over the whole list.
    """
    steps: list[dict[str, Any]] = []
    cur: lbl.Labels | None = labels
    for i, rule in enumerate(rules, 1):
        cur = relabel.process(cur, [rule]) if cur is not None else None
        steps.append({"rule": i, "action": rule.action, "rule_text": rule_text(rule),
                      "labels": dict(cur) if cur is not None else None, "dropped": cur is None})
        if cur is None:
            break
    return steps


def rule_text(rule: relabel.Rule) -> str:
    parts = [f"action={rule.action}"]
    if rule.source_labels:
        parts.append("source_labels=[" + ", ".join(rule.source_labels) + "]")
    if rule.regex != relabel.DEFAULT_REGEX:
        parts.append(f"regex={rule.regex!r}")
    if rule.target_label:
        parts.append(f"target_label={rule.target_label}")
    if rule.action == "replace" and rule.replacement != relabel.DEFAULT_REPLACEMENT:
        parts.append(f"replacement={rule.replacement!r}")
    if rule.modulus:
        parts.append(f"modulus={rule.modulus}")
    return " ".join(parts)


_PAIR = re.compile(r'"?([^\s{},=:"]+)"?\s*[=:]\s*"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t"}


def parse_labels(text: str) -> lbl.Labels:
    """``{a="b", c="d"}``, one ``a="b"`` per line, or JSON ``{"a": "b"}``: all the same pairs."""
    if len(text) > MAX_PLAYGROUND:
        raise BadInput(f"label set too long: {len(text)} characters, at most {MAX_PLAYGROUND}")
    pairs = [(n, _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), v)) for n, v in _PAIR.findall(text)]
    if not pairs:
        raise BadInput('no labels found: write them as {name="value", ...}')
    if len(pairs) > MAX_LABELS:
        raise BadInput(f"too many labels: {len(pairs)}, at most {MAX_LABELS}")
    return lbl.from_pairs(pairs)


def relabel_components(controller: Controller) -> list[Node]:
    return [n for n in controller.nodes() if n.name in RELABEL_COMPONENTS and n.args is not None]


def playground(controller: Controller, component: str, text: str) -> dict[str, Any]:
    node = controller.node(component)
    if node is None or node.name not in RELABEL_COMPONENTS or node.args is None:
        raise BadInput(f"{component[:100]!r} is not a running discovery.relabel or prometheus.relabel")
    labels = parse_labels(text)
    rs = rule_list(node.args.rule)
    steps = trace(labels, rs)
    final = steps[-1]["labels"] if steps else dict(labels)
    return {"component": node.id, "input": dict(labels), "steps": steps, "output": final}


# ------------------------------------------------------------------ targets


@dataclass(slots=True)
class _Upstream:
    """What one discovery.relabel did to each of its input targets."""

    component: str
    by_output: dict[lbl.Labels, lbl.Labels]  # output -> the input it came from
    dropped: list[dict[str, Any]]


_UPSTREAM: weakref.WeakKeyDictionary[Node, tuple[Any, _Upstream]] = weakref.WeakKeyDictionary()
_SNAPSHOT: weakref.WeakKeyDictionary[Controller, tuple[float, list[dict[str, Any]]]] = weakref.WeakKeyDictionary()


def _upstream(node: Node) -> _Upstream:
    """Re-run once per set of arguments: the rules and input only change when the arguments do."""
    cached = _UPSTREAM.get(node)
    if cached is not None and cached[0] is node.args:
        return cached[1]
    up = _relabel_all(node)
    _UPSTREAM[node] = (node.args, up)
    return up


def _relabel_all(node: Node) -> _Upstream:
    rs = rule_list(node.args.rule)
    by_output: dict[lbl.Labels, lbl.Labels] = {}
    dropped: list[dict[str, Any]] = []
    for labels in targets_to_labels(node.args.targets):
        out = relabel.process(labels, rs)
        if out is not None:
            by_output.setdefault(out, labels)
            continue
        steps = trace(labels, rs)
        last = steps[-1]
        dropped.append({"labels": dict(labels), "rule": last["rule"], "action": last["action"],
                        "rule_text": last["rule_text"]})
    return _Upstream(node.id, by_output, dropped)


def _scrapes(controller: Controller) -> list[Node]:
    return [n for n in controller.nodes() if n.name == "prometheus.scrape" and n.component is not None]


def all_targets(controller: Controller) -> list[dict[str, Any]]:
    """Every target any prometheus.scrape knows, and every target an upstream rule dropped."""
    now = time.monotonic()
    snap = _SNAPSHOT.get(controller)
    if snap is not None and now - snap[0] < SNAPSHOT_SECONDS:
        return snap[1]
    rows = _assemble(controller)
    _SNAPSHOT[controller] = (now, rows)
    return rows


def _row(component: str, health: str, labels: dict[str, str], discovered: dict[str, str],
         **extra: Any) -> dict[str, Any]:
    """One target in the shape of Alloy's ``/api/v0/web/targets`` entries, plus Shoal's fields."""
    row = {"component_id": component, "job": labels.get("job", ""), "url": "", "health": health,
           "labels": {k: v for k, v in labels.items() if not k.startswith("__")},
           "discovered_labels": discovered, "last_scrape": "", "last_scrape_duration": "",
           "last_error": "", "owner": "", "series": 0}
    row.update(extra)
    return row


def _operators(controller: Controller) -> list[Node]:
    return [n for n in controller.nodes()
            if n.name.startswith("prometheus.operator.") and n.component is not None]


def _pool_rows(node_id: str, info: dict[str, Any], ups: list[_Upstream],
               **extra: Any) -> list[dict[str, Any]]:
    """One component's (or one monitor's) scraped, elsewhere and self-dropped targets."""
    rows = []
    for t in info.get("targets", []):
        discovered = t.get("discovered_labels", {})
        before, by = _source(ups, discovered)
        rows.append(_row(node_id, t["health"], t["labels"], before or discovered, url=t["url"],
                         relabeled_by=by, owner=t.get("owner", ""), last_scrape=t["last_scrape"],
                         last_scrape_duration=t["last_scrape_duration"], series=t["series"],
                         last_error=t["last_error"], **extra))
    for t in info.get("targets_elsewhere", []):
        rows.append(_row(node_id, "elsewhere", t["labels"], t.get("discovered_labels", t["labels"]),
                         owner=t["owner"], **extra))
    for t in info.get("targets_dropped", []):
        rows.append(_row(node_id, "dropped", {}, t["labels"],
                         last_error=t["reason"] or "dropped by the scrape's own checks", **extra))
    return rows


def _assemble(controller: Controller) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen_upstream: set[str] = set()
    for node in _scrapes(controller):
        ups = []
        for dep in sorted(node.decl.deps):
            dn = controller.node(dep)
            if dn is not None and dn.name == "discovery.relabel" and dn.args is not None:
                ups.append(_upstream(dn))
        rows.extend(_pool_rows(node.id, node.debug_info() or {}, ups))
        for up in ups:
            if up.component in seen_upstream:
                continue
            seen_upstream.add(up.component)
            for d in up.dropped:
                rows.append(_row(node.id, "dropped", {}, d["labels"], dropped_by={
                    "component": up.component, "rule": d["rule"], "action": d["action"],
                    "rule_text": d["rule_text"]}))
    for node in _operators(controller):
        for mon in (node.debug_info() or {}).get("monitors", []):
            # A monitor's job label comes from its relabeling; its scrape pool names it.
            rows.extend(_pool_rows(node.id, mon, [], monitor=f"{mon['namespace']}/{mon['name']}"))
    return rows


def _source(ups: list[_Upstream], discovered: dict[str, str]) -> tuple[dict[str, str], str]:
    """The labels a target had before the upstream discovery.relabel, and which one it was."""
    if not ups:
        return {}, ""
    key = tuple(sorted(discovered.items()))
    for up in ups:
        src = up.by_output.get(key)
        if src is not None:
            return dict(src), up.component
    return {}, ""


def _terms(q: str) -> list[tuple[str | None, str]]:
    """``name=value`` terms match that label exactly; a bare word matches any label value or name."""
    if len(q) > MAX_QUERY:
        raise BadInput(f"search too long: {len(q)} characters, at most {MAX_QUERY}")
    out: list[tuple[str | None, str]] = []
    for word in q.split():
        name, sep, value = word.partition("=")
        out.append((name, value.strip('"')) if sep and name else (None, word.lower()))
    return out


def _matches(row: dict[str, Any], terms: list[tuple[str | None, str]]) -> bool:
    sets = (row["labels"], row["discovered_labels"])
    for name, value in terms:
        if name is not None:
            if not any(s.get(name) == value for s in sets):
                return False
        elif not (any(value in k.lower() or value in v.lower() for s in sets for k, v in s.items())
                  or value in row["url"].lower() or value in row["health"]):
            return False
    return True


def targets_page(controller: Controller, q: str = "", health: str = "", offset: int = 0,
                 limit: int | None = None, job: str = "", component: str = "") -> dict[str, Any]:
    """Alloy's answer (``status``, ``data``; filters ``job``, ``health``, ``component``) plus a
    search and paging: without ``limit`` every match is returned, as Alloy does."""
    terms = _terms(q)
    offset = max(0, offset)
    rows = all_targets(controller)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["health"]] = counts.get(r["health"], 0) + 1
    hits = [r for r in rows if (not health or r["health"] == health) and (not job or r["job"] == job)
            and (not component or r["component_id"] == component) and (not terms or _matches(r, terms))]
    end = len(hits) if limit is None else offset + max(1, min(limit, MAX_PAGE))
    return {"status": "success", "data": hits[offset:end], "total": len(rows), "matched": len(hits),
            "offset": offset, "limit": end - offset, "states": counts}


# ------------------------------------------------------------------ why not scraped


def why_not(controller: Controller, q: str) -> dict[str, Any]:
    """What happened to the targets a pod, service or address names, stage by stage."""
    q = q.strip()
    if not q:
        raise BadInput("ask about a pod, a service or an address")
    terms = _terms(q)
    hits = [r for r in all_targets(controller) if _matches(r, terms)]
    rejected = _backend_errors(controller)
    answers = []
    for r in hits[:50]:
        answers.append({**r, "verdict": _verdict(r, rejected)})
    if not hits:
        discovery = [n.id for n in controller.nodes() if n.name.startswith("discovery.")]
        answers.append({"verdict": "not discovered: no component's targets have a label matching "
                        f"{q!r} (discovery components: {', '.join(discovery) or 'none'})",
                        "health": "undiscovered"})
    return {"query": q, "matched": len(hits), "answers": answers}


def _verdict(r: dict[str, Any], rejected: list[str]) -> str:
    st, comp = r["health"], r["component_id"]
    if st == "dropped":
        d = r.get("dropped_by")
        if d:
            return f"dropped by rule {d['rule']} ({d['action']}) of {d['component']}: {d['rule_text']}"
        return f"dropped by {comp}: {r['last_error']}"
    if st == "elsewhere":
        return f"owned by peer {r['owner']}: {comp} on that agent scrapes it"
    if st == "down":
        return f"scraped by {comp} but failing with error: {r['last_error']}"
    if st == "unknown":
        return f"scraped by {comp}, waiting for its first scrape"
    if rejected:
        return f"scraped by {comp}, but the backend rejects samples: " + "; ".join(rejected)
    return f"scraped by {comp}: up, {r['series']} series on the last scrape"


def _backend_errors(controller: Controller) -> list[str]:
    """Endpoints that rejected samples lately; an old rejection is history, not the answer."""
    out = []
    recent = time.time() - REJECTION_SECONDS
    for ep in remote_write(controller):
        if ep["last_error"] and ep["samples_failed"] and ep["last_error_time"] >= recent:
            out.append(f"{ep['component']} {ep['url']}: {ep['last_error']}")
    return out


# ------------------------------------------------------------------ remote write


def remote_write(controller: Controller) -> list[dict[str, Any]]:
    """One row per endpoint of every prometheus.remote_write, with the WAL it reads."""
    out = []
    for node in controller.nodes():
        if node.name != "prometheus.remote_write" or node.component is None:
            continue
        st = node.debug_info() or {}
        wal = st.get("wal", {})
        for ep in st.get("endpoints", []):
            per_sec = float(ep.get("shard_tuning", {}).get("rate_out", 0.0))
            pending = ep.get("pending_samples", 0)
            out.append({
                "component": node.id, "name": ep.get("name", ""), "url": ep.get("url", ""),
                "wal_size_bytes": wal.get("size_bytes", 0), "wal_segments": wal.get("segments", 0),
                "wal_error": wal.get("last_error", ""), "backlog_samples": pending,
                "backlog_seconds": round(pending / per_sec, 1) if per_sec > 0 else None,
                "shards": ep.get("shards", 0), "send_rate": per_sec,
                "samples_sent": ep.get("samples_sent", 0), "samples_failed": ep.get("samples_failed", 0),
                "samples_retried": ep.get("samples_retried", 0),
                "dropped": ep.get("samples_dropped", {}),
                "failed_by_reason": ep.get("samples_failed_by_reason", {}),
                "last_error": ep.get("last_error", ""), "last_error_time": ep.get("last_error_time", 0),
                "admission": st.get("admission", {}),  # the component's scrape admission (shedding, why)
                "detail": ep,
            })
    return out



# ------------------------------------------------------------------ live samples


def _paths(controller: Controller, node: Node, seen: tuple[str, ...] = ()) -> list[list[Node]]:
    """Every chain of prometheus.relabel from ``node`` to a component that is not one (a sink)."""
    out: list[list[Node]] = []
    for dep in sorted(node.decl.deps):
        dn = controller.node(dep)
        if dn is None or dn.id in seen or dn.name.startswith("discovery."):
            continue
        if dn.name == "prometheus.relabel" and dn.args is not None:
            out += [[dn, *rest] for rest in _paths(controller, dn, (*seen, dn.id))] or [[dn]]
        else:
            out.append([dn])
    return out


def live_samples(controller: Controller, scrape: Node, samples: list[tuple[lbl.Labels, int, float]]
                 ) -> dict[str, Any]:
    """A captured scrape, and each series as it reaches each sink after the metric relabeling on the way.

    The capture is what prometheus.scrape forwards; the rules of every
    prometheus.relabel between it and a sink are applied here with the same
    engine, so the page shows what the WAL receives (or which series a rule drops).
    """
    paths = _paths(controller, scrape)
    chains = [[rule_list(n.args.rule) for n in p if n.name == "prometheus.relabel"] for p in paths]
    rows = []
    for labels, ts, value in samples:
        after = []
        for chain in chains:
            cur: lbl.Labels | None = labels
            for rs in chain:
                cur = relabel.process(cur, rs) if cur is not None else None
            after.append(lbl.to_string(cur) if cur is not None else None)
        shown: float | str = value if math.isfinite(value) else ("stale" if is_stale_nan(value) else str(value))
        rows.append({"series": lbl.to_string(labels), "timestamp": ts, "value": shown, "after": after})
    return {"paths": [" → ".join(n.id for n in p) for p in paths], "samples": rows}
