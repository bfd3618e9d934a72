"""The debug pages: one small server-rendered shell per page, filled and refreshed by ``ui.js``.

Each page states the question it answers, holds its forms as plain HTML (so it
works with a keyboard and without a mouse), and leaves the data to the script,
which polls the JSON API under ``/api/v0/web/``. ``<base href>`` carries the
``--server.http.ui-path-prefix``, so every link and request in the page is
relative and works through a reverse proxy that serves the agent under a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from agent import __version__


@dataclass(frozen=True, slots=True)
class Page:
    path: str  # relative to the prefix, without the leading slash
    title: str
    question: str
    body: str = ""
    in_nav: bool = True


_SEARCH = ('<form class="query" role="search"><label for="q">{label}</label> '
           '<input id="q" name="q" maxlength="1000" autocomplete="off" placeholder="{hint}"> {extra}'
           '<button type="submit">{button}</button></form>')

PAGES = {
    "components": Page("", "Components", "Is every component healthy, and what did each one evaluate to?",
                       '<div id="data" aria-live="polite"></div>'),
    "component": Page("component", "Component", "What are this component's arguments, exports and state?",
                      '<div id="data" aria-live="polite"></div>', in_nav=False),
    "graph": Page("graph", "Graph", "Which component feeds which?", '<div id="data" class="graph"></div>'),
    "targets": Page(
        "targets", "Targets",
        "What is scraped, by whom, when, and with what result? What did relabeling drop?",
        _SEARCH.format(label="Search by label", hint='job=node  or  10.0.0.7  or  pod=web-1',
                       button="Search", extra='<label for="state">State</label> <select id="state" name="state">'
                       '<option value="">any</option><option>up</option><option>down</option>'
                       '<option>unknown</option><option>dropped</option><option>elsewhere</option>'
                       '</select> ')
        + '<div id="data" aria-live="polite"></div>'),
    "whynot": Page(
        "whynot", "Why not scraped?",
        "Given a pod, a service or an address: where along the path did it stop?",
        _SEARCH.format(label="Pod, service or address", hint="web-1  or  10.0.0.7:9100  or  service=api",
                       button="Explain", extra="") + '<div id="data" aria-live="polite"></div>'),
    "clustering": Page("clustering", "Cluster",
                       "Which peers are in the cluster, in what state, and does every peer agree?",
                       '<div id="data" aria-live="polite"></div>'),
    "remote": Page("remote-write", "Remote write",
                   "Is data leaving the agent, how far behind is it, and what was dropped or rejected?",
                   '<div id="data" aria-live="polite"></div>'),
    "live": Page(
        "live", "Live samples",
        "What exactly did this target's last scrape produce, as it goes on to the pipeline?",
        '<form class="query"><label for="component">Scrape component</label> <select id="component" '
        'name="component"></select> <label for="q">Target instance</label> <input id="q" name="q" '
        'maxlength="1000" placeholder="host:port"> <button type="submit">Watch</button></form>'
        '<div id="data" aria-live="polite"></div>'),
    "playground": Page(
        "playground", "Relabel playground", "What does each rule of a component do to this label set?",
        '<form class="query playground"><label for="component">Rules of</label> '
        '<select id="component" name="component"></select><label for="q">Labels</label>'
        '<textarea id="q" name="q" rows="6" maxlength="16384" '
        'placeholder="{__address__=&quot;10.0.0.7:9100&quot;, job=&quot;node&quot;}"></textarea>'
        '<button type="submit">Run the rules</button></form><div id="data" aria-live="polite"></div>'),
}


def render(page: str, prefix: str, arg: str = "") -> str:
    p = PAGES[page]
    nav = "".join(
        f'<a href="{q.path}"{" aria-current=page" if q is p else ""}>{escape(q.title)}</a>'
        for q in PAGES.values() if q.in_nav
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal · {escape(p.title)}</title>
<base href="{escape(prefix, quote=True)}/">
<link rel="stylesheet" href="assets/ui.css"><link rel="icon" href="data:,"></head>
<body data-page="{page}" data-arg="{escape(arg, quote=True)}">
<a class="skip" href="{escape(p.path)}#main">Skip to content</a>
<header><span class="brand">Shoal {escape(__version__)}</span><nav>{nav}</nav></header>
<div id="config-banner" class="error" role="alert" hidden></div>
<main id="main" tabindex="-1"><h1>{escape(p.title)}{': ' + escape(arg) if arg else ''}</h1>
<p class="question">{escape(p.question)}</p>
{p.body}
<p class="refresh" id="refresh"></p></main>
<script src="assets/ui.js"></script></body></html>
"""
