"""Each role's targets and labels from discovery.kubernetes against vmagent's Kubernetes
discovery, both reading the same objects from the API server stand-in over HTTPS with a token
and the manifests' RBAC.

Where vmagent 1.79 and Prometheus today differ we follow Prometheus; every such
difference is listed in ``tests/discovery/vmagent.py`` and nothing else may differ.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from agent.discovery.informers import Informers
from agent.discovery.roles import build
from agent.runtime.controller import Controller
from agent.runtime.services import HTTP, KUBERNETES_INFORMERS, Services
from agent.server.http import HTTPInfo
from tests.components.helpers import files, make_registry, run
from tests.discovery.fixtures import EDGE_OBJECTS, OBJECTS, load, lookups
from tests.discovery.test_informer import until
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


def _alloy(jobs: dict[str, tuple[str, bool, dict]]) -> str:
    """The same jobs as discovery.kubernetes components, labelled by job."""
    blocks = []
    for job, (role, attach, sd) in jobs.items():
        attach_block = "\n  attach_metadata {\n    node = true\n  }" if attach else ""
        blocks.append(f'''discovery.kubernetes "{job.replace("-", "_")}" {{
  role              = "{role}"
  api_server        = "{sd["api_server"]}"
  bearer_token_file = "{sd["bearer_token_file"]}"
  tls_config {{
    ca_file = "{sd["tls_config"]["ca_file"]}"
  }}{attach_block}
}}
''')
    return "\n".join(blocks)


async def _component_targets(tmp_path: Path, jobs: dict, counts: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """Each job's targets as exported by discovery.kubernetes under the runtime."""
    informers = Informers()
    services = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), KUBERNETES_INFORMERS: informers})
    c = Controller(storage_path=tmp_path / "data", registry=make_registry(), services=services)
    await c.load(files(_alloy(jobs)))

    def exports() -> dict[str, list[dict[str, str]]]:
        return {job: c.node("discovery.kubernetes." + job.replace("-", "_")).exports.targets for job in jobs}
    await until(lambda: {j: len(ts) for j, ts in exports().items()} == counts, 10)
    out = exports()
    await c.stop()
    await informers.stop()
    return out


def test_every_role_matches_vmagent(tmp_path: Path) -> None:
    objs = load(OBJECTS, EDGE_OBJECTS)
    served = yaml.safe_load(OBJECTS.read_text()) + yaml.safe_load(EDGE_OBJECTS.read_text())
    with APIServer(tmp_path / "api", objects=served) as api:
        api.add_token(TOKEN)
        api.load_rbac()
        (tmp_path / "token").write_text(TOKEN)
        jobs = _jobs(api, tmp_path / "token")
        # How many targets each job has, to know when both sides have discovered everything.
        counts = {job: sum(len(build(role, o, lookups(objs, attach)).targets) for o in objs[KINDS[role]])
                  for job, (role, attach, _sd) in jobs.items()}
        ours = run(_component_targets(tmp_path, jobs, counts))
        expected: dict[str, list[dict[str, str]]] = {}
        for job, (role, attach, _sd) in jobs.items():
            lk = lookups(objs, attach_node=attach)
            mapped = (to_vmagent_1_79(role, t, lk) for t in ours[job])
            expected[job] = [t for t in mapped if t is not None]
        with vmagent(tmp_path / "vmagent", {j: sd for j, (_, _, sd) in jobs.items()}) as vm:
            theirs = discovered(vm, {j: len(ts) for j, ts in expected.items()})
    assert sum(map(len, expected.values())) > 50
    for job, (role, _attach, _sd) in jobs.items():
        got = collections.Counter(_key(vmagent_only(role, t)) for t in theirs[job])
        want = collections.Counter(_key(t) for t in expected[job])
        assert got == want, f"{job}: only vmagent {list((got - want).elements())}, only ours {list((want - got).elements())}"
