"""The minimal page at ``/``: every component and its health (the real UI is its own issue)."""

from __future__ import annotations

from html import escape

from agent import __version__
from agent.runtime.controller import Controller

_COLOURS = {"healthy": "#1a7f37", "unhealthy": "#cf222e", "exited": "#cf222e", "unknown": "#9a6700"}


def index(controller: Controller) -> str:
    rows = []
    for node in controller.nodes():
        h = node.health()
        rows.append(
            "<tr>"
            f'<td><a href="/api/v0/web/components/{escape(node.id)}">{escape(node.id)}</a></td>'
            f"<td>{escape(node.name)}</td>"
            f'<td style="color:{_COLOURS.get(h.state.value, "#000")}">{escape(h.state.value)}</td>'
            f"<td>{escape(h.message)}</td>"
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="4">no components</td></tr>'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shoal</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em 1em;text-align:left}}
tr:nth-child(even){{background:#f6f8fa}}</style></head>
<body><h1>Shoal {escape(__version__)}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/api/v0/web/components">/api/v0/web/components</a></p>
<table><thead><tr><th>Component</th><th>Name</th><th>Health</th><th>Message</th></tr></thead>
<tbody>
{body}
</tbody></table></body></html>
"""
