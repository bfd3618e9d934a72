"""The component graph as an SVG picture, drawn on the server so the page needs no graph library.

Components are placed in columns by their depth in the dependency order (a
component sits one column right of the deepest component it references), and
each reference is a line from the referenced component to the one using it.
Every text is escaped; each box links to the component's page.
"""

from __future__ import annotations

from html import escape

from agent.runtime.controller import Controller

_W, _H, _GX, _GY = 240, 46, 70, 22
_FILL = {"healthy": "#dafbe1", "unhealthy": "#ffebe9", "exited": "#ffebe9", "unknown": "#fff8c5"}


def render(controller: Controller, prefix: str = "") -> str:
    nodes = controller.nodes()
    ids = {n.id for n in nodes}
    depth: dict[str, int] = {}
    for n in nodes:  # dependency order: a node's references come before it
        depth[n.id] = 1 + max((depth.get(d, 0) for d in n.decl.deps if d in ids), default=-1)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n.id], []).append(n.id)
    pos = {cid: (c * (_W + _GX) + 10, r * (_H + _GY) + 10)
           for c, col in columns.items() for r, cid in enumerate(col)}
    width = (max(columns, default=0) + 1) * (_W + _GX) + 10
    height = max((len(c) for c in columns.values()), default=1) * (_H + _GY) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="component graph" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             'font-size="12"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
             'markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#57606a"/>'
             '</marker></defs>']
    for n in nodes:
        x2, y2 = pos[n.id]
        for d in sorted(n.decl.deps):
            if d in pos:
                x1, y1 = pos[d]
                parts.append(f'<line x1="{x1 + _W}" y1="{y1 + _H // 2}" x2="{x2}" y2="{y2 + _H // 2}" '
                             'stroke="#57606a" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = pos[n.id]
        state = n.health().state.value
        href = escape(f"{prefix}/component/{n.id}", quote=True)
        parts.append(
            f'<a href="{href}"><rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" '
            f'fill="{_FILL.get(state, "#fff")}" stroke="#57606a"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(n.name)}</text>'
            f'<text x="{x + 8}" y="{y + 36}">{escape(n.decl.label or "")} · {escape(state)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
