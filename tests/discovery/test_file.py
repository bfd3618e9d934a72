"""discovery.file over real files: Prometheus' file_sd semantics, then the component in the runtime."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.discovery.file import FileDiscovery, FileSDError, parse
from agent.runtime.health import State
from tests.components.helpers import controller, files, metrics_text, run


def _engine(patterns: list[str], seen: list) -> FileDiscovery:
    return FileDiscovery(patterns, 300.0, seen.append, registry=CollectorRegistry())


def test_json_and_yaml_groups_with_filepath(tmp_path: Path) -> None:
    j = tmp_path / "a.json"
    j.write_text(json.dumps([
        {"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod", "job": "node"}},
        {"targets": ["h3:9100"]},
    ]))
    y = tmp_path / "b.yml"
    y.write_text("- targets: ['h4:80']\n  labels:\n    __metrics_path__: /m\n    rack: 7\n    v: 1.10\n")
    (tmp_path / "ignored.txt").write_text("not matched")
    seen: list = []
    eng = _engine([str(tmp_path / "*.json"), str(tmp_path / "*.yml")], seen)
    assert eng.refresh(full=True)
    assert seen[-1] == [
        {"env": "prod", "job": "node", "__meta_filepath": str(j), "__address__": "h1:9100"},
        {"env": "prod", "job": "node", "__meta_filepath": str(j), "__address__": "h2:9100"},
        {"__meta_filepath": str(j), "__address__": "h3:9100"},
        {"__metrics_path__": "/m", "rack": "7", "v": "1.10", "__meta_filepath": str(y),
         "__address__": "h4:80"},
    ]
    assert eng.errors() == {}
    assert not eng.refresh(), "nothing changed, nothing published"


def test_parse_refuses_what_prometheus_refuses() -> None:
    bad = {
        "x.json": (b'{"targets": []}', "expected a list of target groups"),
        "y.yml": (b"- targets: [a]\n  lables: {}\n", "unknown field 'lables'"),
        "z.yaml": (b"- targets: [a]\n  labels: {'': x}\n", "is not a valid label name"),
        "w.json": (b"[{\"targets\": [1]}]", "target 1 is not a string"),
        "u.json": (b"[{\"targets\": [], \"labels\": {\"a\": 1}}]", "label 'a' must be a string"),
        "v.yml": (b"- targets: [a\n", "cannot parse"),
    }
    for name, (content, reason) in bad.items():
        try:
            parse(content, name)
        except FileSDError as exc:
            assert reason in str(exc), (name, exc)
        else:
            raise AssertionError(f"{name} was accepted")
    assert parse(b"", "empty.yml") == []


def test_broken_file_keeps_last_good_targets_then_recovers(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps([{"targets": ["a:1"]}]))
    seen: list = []
    reg = CollectorRegistry()
    eng = FileDiscovery([str(tmp_path / "*.json")], 300.0, seen.append, registry=reg)
    eng.refresh(full=True)
    good = seen[-1]
    f.write_text('[{"targets": ["a:1", ')  # half written
    assert not eng.refresh()
    assert eng.targets() == good
    assert "cannot parse" in eng.errors()[str(f)]
    assert reg.get_sample_value("prometheus_sd_file_read_errors_total") == 1
    f.write_text(json.dumps([{"targets": ["b:2"]}]))
    os.utime(f, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert eng.refresh()
    assert [t["__address__"] for t in seen[-1]] == ["b:2"]
    assert eng.errors() == {}


def test_pathological_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "ok.json").write_text(json.dumps([{"targets": ["a:1"]}]))
    seen: list = []
    eng = _engine([str(tmp_path / "*.json")], seen)
    eng.refresh(full=True)
    assert [t["__address__"] for t in seen[-1]] == ["a:1"]
    assert "cannot parse" in eng.errors()[str(deep)]


def test_removed_file_takes_its_targets(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("- targets: [a:1]\n")
    b.write_text("- targets: [b:1]\n")
    seen: list = []
    eng = _engine([str(tmp_path / "*.yaml")], seen)
    eng.refresh(full=True)
    assert len(seen[-1]) == 2
    b.unlink()
    assert eng.refresh()
    assert [t["__address__"] for t in seen[-1]] == ["a:1"]


DISCOVERY_FILE = """
discovery.file "f" {
  files            = ["{dir}/*.json"]
  refresh_interval = "1m"
}
"""


def test_component_exports_reloads_and_health(tmp_path: Path) -> None:
    d = tmp_path / "sd"
    d.mkdir()
    f = d / "t.json"
    f.write_text(json.dumps([{"targets": ["a:1"], "labels": {"team": "x"}}]))

    async def go() -> None:
        c = controller(tmp_path / "data")
        await c.load(files(DISCOVERY_FILE.replace("{dir}", str(d))))
        await c.settle()
        node = c.node("discovery.file.f")
        assert node is not None
        assert node.exports.targets == [
            {"team": "x", "__meta_filepath": str(f), "__address__": "a:1"}
        ]
        comp = node.component
        comp.engine.poll_interval = 0.05
        # A changed file is picked up by the running component.
        f.write_text(json.dumps([{"targets": ["a:1", "b:2"]}]))
        os.utime(f, ns=(2, 2))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(node.exports.targets) == 2:
                break
        assert [t["__address__"] for t in node.exports.targets] == ["a:1", "b:2"]
        # A broken file: last good targets stay, health says which file and why.
        f.write_text("[{")
        os.utime(f, ns=(3, 3))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if node.health().state == State.UNHEALTHY:
                break
        health = node.health()
        assert health.state == State.UNHEALTHY
        assert str(f) in health.message and "cannot parse" in health.message
        assert [t["__address__"] for t in node.exports.targets] == ["a:1", "b:2"]
        assert 'prometheus_sd_file_read_errors_total{component_id="discovery.file.f"} 1.0' in (
            metrics_text(c)
        )
        await c.stop()

    run(go())


def test_component_refuses_bad_arguments(tmp_path: Path) -> None:
    c = controller(tmp_path)
    try:
        c.check(files('discovery.file "f" {\n  refresh_interval = "0s"\n  files = []\n}\n'))
    except Exception as exc:  # noqa: BLE001 - the runtime's positioned error
        assert "refresh_interval must be greater than 0" in str(exc)
    else:
        raise AssertionError("accepted")
    try:
        c.check(files('discovery.file "f" {\n}\n'))
    except Exception as exc:  # noqa: BLE001
        assert "files" in str(exc)
    else:
        raise AssertionError("accepted")


def test_component_update_switches_files(tmp_path: Path) -> None:
    d = tmp_path / "sd"
    d.mkdir()
    (d / "a.json").write_text(json.dumps([{"targets": ["a:1"]}]))
    (d / "b.yaml").write_text("- targets: [b:1]\n")

    async def go() -> None:
        c = controller(tmp_path / "data")
        await c.load(files(f'discovery.file "f" {{\n  files = ["{d}/*.json"]\n}}\n'))
        await c.settle()
        node = c.node("discovery.file.f")
        assert node is not None
        assert [t["__address__"] for t in node.exports.targets] == ["a:1"]
        comp = node.component
        await c.load(files(f'discovery.file "f" {{\n  files = ["{d}/*.yaml"]\n}}\n'))
        await c.settle()
        assert node.component is comp, "updated in place, not rebuilt"
        assert [t["__address__"] for t in node.exports.targets] == ["b:1"]
        await c.stop()

    run(go())
