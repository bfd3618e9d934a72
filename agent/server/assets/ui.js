// Shoal debug UI: fills each page from the JSON API and refreshes it without a reload.
// Every value goes into the page as text (never as HTML), so labels and errors cannot inject markup.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const arg = document.body.dataset.arg;
  const data = document.getElementById("data");
  const form = document.querySelector("form.query");
  const REFRESH_MS = page === "live" ? 2000 : 5000;
  const MAX_ITEMS = 100; // array entries drawn on a component's page
  let offset = 0;
  const pageSize = Math.min(500, Math.max(1, parseInt(new URLSearchParams(location.search).get("limit"), 10) || 100));

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "onclick") el.addEventListener("click", v); else el.setAttribute(k, v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  const state = (s) => h("span", { class: "state state-" + s }, s);
  function labels(obj, before) {
    const out = h("div", { class: "labels" });
    for (const [k, v] of Object.entries(obj || {}).sort()) {
      const cls = before && before[k] !== v ? "changed" : null;
      out.append(h("span", { class: cls }, k + '="' + v + '"'));
    }
    if (before) for (const k of Object.keys(before).sort()) if (!(k in obj)) out.append(h("span", { class: "gone" }, k));
    return out;
  }
  function table(head, rows) {
    return h("div", { class: "table" }, h("table", {}, h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { "data-label": head[i] }, c)))))));
  }
  function show(...nodes) { data.replaceChildren(...nodes.flat(Infinity)); }
  function stamp() { document.getElementById("refresh").textContent = "updated " + new Date().toLocaleTimeString() + "; refreshes every " + REFRESH_MS / 1000 + " s"; }
  async function get(url, opts) {
    const r = await fetch(url, opts);
    const ct = r.headers.get("content-type") || "";
    const body = ct.includes("json") ? await r.json() : await r.text();
    if (!r.ok) { const e = new Error(typeof body === "string" ? body : body.error || r.statusText); e.status = r.status; throw e; }
    return body;
  }
  const size = (b) => b < 1048576 ? (b / 1024).toFixed(1) + " KiB" : (b / 1048576).toFixed(1) + " MiB";
  const q = () => (document.getElementById("q") || {}).value || "";
  const enc = encodeURIComponent;

  // Alloy's JSON body/value encoding as nested lists.
  function value(v) {
    if (!v) return "";
    switch (v.type) {
      case "null": return h("code", {}, "null");
      case "array": return h("ol", {}, v.value.slice(0, MAX_ITEMS).map((x) => h("li", {}, value(x))),
        v.value.length > MAX_ITEMS ? h("li", {}, `… ${v.value.length - MAX_ITEMS} more (the Targets page pages through them)`) : null);
      case "object": return h("dl", {}, v.value.map((e) => [h("dt", {}, e.key), h("dd", {}, value(e.value))]));
      default: return h("code", {}, typeof v.value === "string" && v.type === "string" ? JSON.stringify(v.value) : String(v.value));
    }
  }
  function body(b) {
    if (!b || !b.length) return h("p", {}, "(none)");
    return h("dl", {}, b.map((e) => [h("dt", {}, e.name), h("dd", {}, e.type === "block" ? body(e.body) : value(e.value))]));
  }

  const render = {
    async components() {
      const cs = await get("api/v0/web/components");
      show(table(["Component", "Health", "Message", "Last update", "References"], cs.map((c) => [
        h("a", { href: "component/" + c.localID }, c.localID), state(c.health.state), c.health.message,
        c.health.updatedTime, c.referencesTo.join(", ")])));
    },
    async component() {
      const c = await get("api/v0/web/components/" + arg);
      show(h("p", {}, state(c.health.state), " ", c.health.message, " (", c.health.updatedTime, ")"),
        h("p", {}, "References: ", c.referencesTo.join(", ") || "none", ". Referenced by: ", c.referencedBy.join(", ") || "none", "."),
        h("h2", {}, "Arguments"), body(c.arguments), h("h2", {}, "Exports"), body(c.exports),
        h("h2", {}, "Debug info"), body(c.debugInfo));
    },
    async graph() {
      const svg = await get("api/v0/web/graph.svg");
      data.innerHTML = svg; // rendered by the server with every text escaped
    },
    async targets() {
      const st = document.getElementById("state").value;
      const r = await get(`api/v0/web/targets?q=${enc(q())}&health=${enc(st)}&offset=${offset}&limit=${pageSize}`);
      const counts = Object.entries(r.states).map(([k, v]) => k + ": " + v).join(", ");
      // Paging redraws the table; focus goes back to the same button, so the keyboard can page on.
      const turn = (label, to) => async () => {
        offset = Math.max(0, to); await refresh();
        const b = [...data.querySelectorAll("button")].find((x) => x.textContent === label && !x.disabled);
        if (b) b.focus();
      };
      const prev = h("button", { type: "button", disabled: offset === 0 || null, onclick: turn("Previous", offset - r.limit) }, "Previous");
      const next = h("button", { type: "button", disabled: offset + r.limit >= r.matched || null, onclick: turn("Next", offset + r.limit) }, "Next");
      show(h("p", {}, `${r.matched} of ${r.total} targets match (${counts || "none"}).`),
        table(["State", "Labels after relabeling", "Discovered labels", "Scraped by", "Owner", "Last scrape", "Duration", "Series", "Last error / dropped by"],
          r.data.map((t) => [state(t.health), labels(t.labels),
            h("details", {}, h("summary", {}, "before relabeling"), labels(t.discovered_labels)),
            t.url ? [h("a", { href: "component/" + t.component_id }, t.component_id), t.monitor ? ` (monitor ${t.monitor})` : "", h("br"),
              /^https?:\/\//.test(t.url) ? h("a", { href: t.url, rel: "noreferrer" }, h("code", {}, t.url)) : h("code", {}, t.url), h("br"),
              h("a", { href: `live?component=${enc(t.component_id)}&q=${enc(t.labels.instance || "")}` }, "live samples")] : t.component_id + (t.monitor ? ` (monitor ${t.monitor})` : ""), t.owner, t.last_scrape, t.last_scrape_duration, t.series,
            t.dropped_by ? `rule ${t.dropped_by.rule} (${t.dropped_by.action}) of ${t.dropped_by.component}: ${t.dropped_by.rule_text}` : h("pre", {}, t.last_error)])),
        h("div", { class: "pager" }, prev, `${r.matched ? offset + 1 : 0}–${Math.min(offset + r.limit, r.matched)}`, next));
    },
    async whynot() {
      if (!q()) { show(h("p", {}, "Type a pod name, a service, an address, or label=value.")); return; }
      const r = await get("api/v0/web/whynot?q=" + enc(q()));
      show(h("p", {}, `${r.matched} target(s) match ${JSON.stringify(r.query)}.`), r.answers.map((a) => h("div", { class: "verdict" },
        h("p", {}, state(a.health), " ", a.verdict), a.discovered_labels ? labels(a.discovered_labels) : null)));
    },
    async clustering() {
      let peers;
      try { peers = await get("api/v0/web/peers"); } catch (e) { if (e.status === 404) peers = []; else throw e; }
      if (!Array.isArray(peers) || !peers.length) { show(h("p", { class: "disabled" }, "Clustering disabled: this agent scrapes every target itself.")); return; }
      const base = ["name", "addr", "state", "isSelf"];
      const extra = [...new Set(peers.flatMap((p) => Object.keys(p)))].filter((k) => !base.includes(k));
      // Without --cluster.enabled the endpoint answers as Alloy does, a cluster of one
      // (this agent, with none of the members' fields the cluster adds).
      const alone = peers.length === 1 && peers[0].isSelf && !("role" in peers[0]);
      // Peers that see other targets than this agent split them wrongly: say so above the table.
      const differ = peers.filter((p) => (p.targetSetMismatch || []).length);
      const warn = differ.length ? h("p", { class: "error" }, "Target sets differ from this agent's: " +
        differ.map((p) => `${p.name} (${p.targetSetMismatch.join(", ")})`).join("; ") +
        ". Those targets may be scraped twice or never.") : [];
      show(h("p", { class: alone ? "disabled" : null }, alone
        ? "Clustering disabled: this agent is a cluster of one and scrapes every target itself."
        : peers.length + " peers."), warn, table(["Name", "Address", "State", "This agent", ...extra], peers.map((p) => [
        p.name, p.addr, state(p.state), p.isSelf ? "yes" : "",
        ...extra.map((k) => typeof p[k] === "object" ? h("pre", {}, JSON.stringify(p[k], null, 1)) : p[k])])));
    },
    async remote() {
      const eps = await get("api/v0/web/remote_write");
      if (!eps.length) { show(h("p", {}, "No prometheus.remote_write component.")); return; }
      const kv = (o) => Object.entries(o || {}).map(([k, v]) => k + ": " + v).join(", ") || "none";
      const shedding = [...new Map(eps.filter((e) => e.admission && e.admission.shedding)
        .map((e) => [e.component, e.admission])).entries()].map(([c, a]) => h("p", { class: "error" },
        `Shedding load: ${c} asks its scrapes for ${Math.round(a.share * 100)}% of their ticks. ${a.reason}`));
      show(...shedding, table(["Endpoint", "WAL", "Backlog", "Shards", "Send rate", "Sent / failed / retried", "Dropped", "Failed by reason", "Last error"],
        eps.map((e) => [[e.component, h("br"), h("code", {}, e.url)],
          `${size(e.wal_size_bytes)}, ${e.wal_segments} segments`,
          `${e.backlog_samples} samples` + (e.backlog_seconds === null ? "" : `, ${e.backlog_seconds} s`),
          e.shards, e.send_rate.toFixed(1) + " samples/s", `${e.samples_sent} / ${e.samples_failed} / ${e.samples_retried}`,
          kv(e.dropped), kv(e.failed_by_reason),
          e.last_error ? [h("pre", {}, e.last_error), new Date(e.last_error_time * 1000).toLocaleString()] : "none"])));
    },
    async live() {
      const comp = document.getElementById("component").value;
      if (!comp || !q()) { show(h("p", {}, "Choose a scrape component and a target's instance (host:port), then Watch.")); return; }
      const r = await get(`api/v0/web/live?component=${enc(comp)}&instance=${enc(q())}`);
      if (!r.samples) { show(h("p", {}, "Watching: samples appear after the target's next scrape.")); return; }
      show(h("p", {}, `${r.samples.length} samples from the scrape at ${new Date(r.time * 1000).toLocaleTimeString()}` + (r.truncated ? " (truncated)" : "") + "."),
        table(["Series as scraped", "Timestamp (ms)", "Value", ...r.paths.map((p) => "after " + p)],
          r.samples.map((s) => [h("code", {}, s.series), s.timestamp, String(s.value),
            ...s.after.map((a) => a === null ? h("strong", { class: "error" }, "dropped") : h("code", {}, a))])));
    },
    async playground() {
      if (!q()) { show(h("p", {}, "Paste a label set and run the rules.")); return; }
      const r = await get("api/v0/web/relabel", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ component: document.getElementById("component").value, labels: q() }) });
      let prev = r.input;
      const rows = [["input", "", labels(r.input)]];
      for (const s of r.steps) {
        rows.push([`rule ${s.rule}`, h("code", {}, s.rule_text), s.dropped ? h("strong", { class: "error" }, "dropped") : labels(s.labels, prev)]);
        if (s.labels) prev = s.labels;
      }
      show(table(["Step", "Rule", "Labels after"], rows),
        h("p", {}, r.output ? "Result: kept." : "Result: dropped."));
    },
  };

  async function fillSelect(url, key) {
    const sel = document.getElementById("component");
    const items = await get(url);
    for (const c of items) sel.append(h("option", { value: c[key] }, c[key]));
  }

  // A configuration on disk that was refused leaves the last good one running: say so on every page.
  async function banner() {
    const el = document.getElementById("config-banner");
    try {
      const s = await get("api/v0/web/status");
      el.hidden = !s.configError;
      if (s.configError) el.replaceChildren(h("p", {}, "The configuration on disk was refused; the last good configuration keeps running:"), h("pre", {}, s.configError));
    } catch (e) { el.hidden = true; }
  }
  async function refresh() {
    banner();
    try { await render[page](); stamp(); } catch (e) { show(h("p", { class: "error", role: "alert" }, "Error: " + e.message)); }
  }
  async function start() {
    if (page === "live") await fillSelect("api/v0/web/components", "localID").then(() => {
      const sel = document.getElementById("component");
      for (const o of [...sel.options]) if (!o.value.startsWith("prometheus.scrape.")) o.remove();
    });
    if (page === "playground") await fillSelect("api/v0/web/relabel", "component");
    const params = new URLSearchParams(location.search);
    if (form && params.get("q")) document.getElementById("q").value = params.get("q");
    if (params.get("component") && document.getElementById("component")) document.getElementById("component").value = params.get("component");
    if (form) form.addEventListener("submit", (ev) => {
      ev.preventDefault(); offset = 0;
      const u = new URL(location.href); u.searchParams.set("q", q()); history.replaceState(null, "", u);
      refresh();
    });
    await refresh();
    // A refresh redraws the data: not while the reader is in it (keyboard focus, an open details).
    const busy = () => document.hidden || data.contains(document.activeElement) || data.querySelector("details[open]");
    if (page !== "playground") setInterval(() => { if (!busy()) refresh(); }, REFRESH_MS);
  }
  start();
})();
