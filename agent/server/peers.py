"""The cluster's HTTP endpoints: ``/api/v0/web/peers`` for people and the UI, push-pull for peers.

Peers lists the members as this agent sees them, in Alloy's JSON shape (``name``,
``addr``, ``isSelf``, ``state``) so Alloy's tooling reads it, plus what Shoal
adds to explain ownership: role, liveness, incarnation, the gossiped progress
and the member's share of the key space. Push-pull rides on the HTTP server so
that clustering needs no port besides the listen port (UDP gossip uses its
number); a refused frame is already counted by the engine and answered 400.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from agent.runtime import services
from agent.runtime.controller import Controller

if TYPE_CHECKING:
    from agent.cluster import Member, TargetDigest

# The app serves these routes whether or not the agent clusters, so this module must not import
# the cluster engine (~8 MiB: cryptography, protobuf): it reads members by their enums' names,
# and imports BadMessage only once a cluster service answers. Push-pull's path is the same
# string as agent.cluster.service.PUSH_PULL_PATH (tests/server/test_peers_imports.py checks it).
PUSH_PULL_PATH = "/api/v0/cluster/push-pull"

# Alloy's ckit states; a draining member shows as "viewer" there (it owns nothing).
_ALLOY_STATE = {"PARTICIPANT": "participant", "DRAINING": "viewer", "TERMINATING": "terminating"}
# Keys sampled to estimate each member's share of the targets (rendezvous hashing is uniform).
_SHARE_SAMPLE = [f"share-sample-{i}".encode() for i in range(2000)]

__all__ = ["PUSH_PULL_PATH", "peers", "push_pull"]

Handler = Callable[[Request], Awaitable[Response]]


def _cluster(controller: Controller) -> Any:
    try:
        return controller.services.get(services.CLUSTER)
    except services.ServiceNotFound:
        return None


def _shares(cluster: Any) -> dict[str, float]:
    ring = cluster.ring
    counts: dict[str, int] = {}
    for key in _SHARE_SAMPLE:
        owner = ring.owner(key)
        if owner is not None:
            counts[owner] = counts.get(owner, 0) + 1
    return {name: round(n / len(_SHARE_SAMPLE), 4) for name, n in counts.items()}


def _target_sets(m: Member, mine: dict[str, TargetDigest]) -> dict[str, Any]:
    """What each of the member's clustered components sees, named by our component ids
    (a component we do not run shows by its hash) and whether it agrees with ours."""
    names = {d.component: cid for cid, d in mine.items()}
    out: dict[str, Any] = {}
    for d in m.digests:
        cid = names.get(d.component, f"#{d.component:08x}")
        ours = mine.get(cid)
        out[cid] = {"targets": d.targets, "digest": f"{d.digest:016x}",
                    "agrees": ours is not None and ours.digest == d.digest}
    return out


def _member(m: Member, share: float, holding_back: str, owners: tuple[str, ...], demoted: frozenset[str],
            sets: dict[str, Any], differs: list[str], why: dict[str, str]) -> dict[str, Any]:
    p = m.progress
    return {
        "name": m.name,
        "addr": m.addr,
        "isSelf": m.is_self,
        "state": _ALLOY_STATE[m.role.name] if m.liveness.name in ("ALIVE", "SUSPECT") else "terminating",
        "role": m.role.name.lower(),
        "liveness": m.liveness.name.lower(),
        "incarnation": m.incarnation,
        # By this agent's rule: participating, live, progressing (and, for itself, not held back).
        "ownsTargets": m.name in owners and not (m.is_self and holding_back),
        "demotedForProgress": m.name in demoted,
        "demotedWhy": why.get(m.name, ""),
        "share": share,
        "progress": {
            "scrapesOnTime": p.scrapes_on_time,
            "scrapesDue": p.scrapes_due,
            "loopLagSeconds": p.loop_lag,
            "remoteWriteLagSeconds": p.remote_write_lag,
            "walFsyncSeconds": p.wal_fsync,
            # The part of its ring share it takes while returning (1: all of it).
            "rampWeight": 1.0 - p.ramp_left,
            # A grown share applies from rampAt (unix seconds; 0: in force), rampFrom before.
            "rampAt": p.ramp_at,
            "rampFrom": p.ramp_from,
            # Measured by the member's own clock; shown, never compared across members.
            "timestamp": p.timestamp,
        },
        "heldBack": holding_back if m.is_self else "",
        # Per clustered component: its target count and digest; and the components for which
        # this member's targets differ from this agent's (scraped twice or never otherwise).
        "targetSets": sets,
        "targetSetMismatch": differs,
    }


def peers(controller: Controller) -> Handler:
    async def handler(_: Request) -> Response:
        cluster = _cluster(controller)
        if cluster is None:
            # Not clustered: a cluster of one, as Alloy reports it.
            try:
                listen_addr = controller.services.get(services.HTTP).address
            except services.ServiceNotFound:
                listen_addr = ""
            return JSONResponse([{
                "name": socket.gethostname(), "addr": listen_addr, "isSelf": True, "state": "participant",
            }])
        shares = _shares(cluster)
        held = cluster.holding_back()
        members = sorted(cluster.members(), key=lambda m: (not m.is_self, m.name))
        owners, demoted = cluster.ring.names, cluster.demoted
        mine = cluster.target_sets()
        mismatches = cluster.mismatches
        answer = []
        for m in members:
            differs = sorted(cid for cid, mm in mismatches.items() if m.name in mm.peers)
            answer.append(_member(m, shares.get(m.name, 0.0), held, owners, demoted,
                                  _target_sets(m, mine), differs, cluster.demoted_why))
        return JSONResponse(answer, headers={"X-Shoal-Generated": f"{time.time():.3f}"})

    return handler


def push_pull(controller: Controller) -> Handler:
    async def handler(request: Request) -> Response:
        cluster = _cluster(controller)
        if cluster is None:
            return PlainTextResponse("clustering is not enabled on this agent\n", status_code=404)
        from agent.cluster import BadMessage  # deferred (see the top): clustering is on here

        body = await request.body()
        if len(body) > (1 << 20) + 1024:
            return PlainTextResponse("push-pull frame too large\n", status_code=413)
        peer = request.client.host if request.client else ""
        try:
            answer = await cluster.node.serve_push_pull(body, peer)
        except BadMessage as exc:
            return PlainTextResponse(f"refused: {exc.reason}\n", status_code=400)
        except RuntimeError as exc:  # the node is stopping
            return PlainTextResponse(f"{exc}\n", status_code=503)
        return Response(answer, media_type="application/x-shoal-cluster")

    return handler
