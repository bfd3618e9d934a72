"""Each role's targets and labels against vmagent's Kubernetes discovery, for the same objects
served by the API server stand-in over HTTPS with a token and the manifests' RBAC.

Where vmagent 1.79 and Prometheus today differ we follow Prometheus; every such
difference is listed in ``tests/discovery/vmagent.py`` and nothing else may differ.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from agent.discovery.roles import build
from tests.discovery.fixtures import OBJECTS, load, lookups
from tests.discovery.vmagent import discovered, to_vmagent_1_79, vmagent, vmagent_only
from tests.kube.apiserver import APIServer

pytestmark = pytest.mark.integration

KINDS = {"node": "Node", "pod": "Pod", "service": "Service", "endpoints": "Endpoints",
         "endpointslice": "EndpointSlice", "ingress": "Ingress"}
TOKEN = "differential-token"


def _key(t: dict[str, str]) -> tuple:
    return tuple(sorted(t.items()))


def _jobs(api: APIServer, token_file: Path) -> dict[str, tuple[str, bool, dict]]:
    """A job per role, and one with attach_metadata node for the roles that take it."""
    jobs = {}
    for role in KINDS:
        for attach in (False, True) if role in ("pod", "endpoints", "endpointslice") else (False,):
            sd = {"role": role, "api_server": api.url, "bearer_token_file": str(token_file),
                  "tls_config": {"ca_file": str(api.certs.ca)}}
            if attach:
                sd["attach_metadata"] = {"node": True}
            jobs[role + ("-node" if attach else "")] = (role, attach, sd)
    return jobs


def test_every_role_matches_vmagent(tmp_path: Path) -> None:
    objs = load()
    with APIServer(tmp_path / "api", objects=yaml.safe_load(OBJECTS.read_text())) as api:
        api.add_token(TOKEN)
        api.load_rbac()
        (tmp_path / "token").write_text(TOKEN)
        jobs = _jobs(api, tmp_path / "token")
        expected: dict[str, list[dict[str, str]]] = {}
        for job, (role, attach, _sd) in jobs.items():
            lk = lookups(objs, attach_node=attach)
            ours = []
            for obj in objs[KINDS[role]]:
                tg = build(role, obj, lk)
                for t in tg.flatten():
                    mapped = to_vmagent_1_79(role, t, tg.labels, lk)
                    if mapped is not None:
                        ours.append(mapped)
            expected[job] = ours
        with vmagent(tmp_path / "vmagent", {j: sd for j, (_, _, sd) in jobs.items()}) as vm:
            theirs = discovered(vm, {j: len(ts) for j, ts in expected.items()})
    assert sum(map(len, expected.values())) > 50
    for job, (role, _attach, _sd) in jobs.items():
        got = collections.Counter(_key(vmagent_only(role, t)) for t in theirs[job])
        want = collections.Counter(_key(t) for t in expected[job])
        assert got == want, f"{job}: only vmagent {list((got - want).elements())}, only ours {list((want - got).elements())}"
