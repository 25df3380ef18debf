/* The Simulation tab of a run's page: start a zero-cost replay and read its report.
 *
 * On an original run the tab shows the report of its latest replay (or of the one just
 * started), and lists its replays; on a replay run it shows that replay's own report. The
 * report is the API's (GET /api/v1/runs/<replay>/replay), fetched when the tab first opens
 * and again when the replay ends — never polled: a running replay's progress comes from its
 * live events (this page's own socket on a replay's page, a second one on the original's).
 * The list of replays follows the replays made elsewhere too (run.js relays their events).
 * Everything from the server goes in with textContent (Titan.el).
 */
(function () {
  "use strict";
  const T = window.Titan, el = T.el;
  const panel = document.getElementById("panel-simulation");
  if (!panel) return;
  const runId = panel.dataset.runId;
  const isReplay = !!panel.dataset.replayOf;
  const target = panel.dataset.target;  // the run a new replay re-executes
  const button = document.getElementById("simulate-replay");
  const modeSel = document.getElementById("replay-mode");
  const errorBox = document.getElementById("replay-error");
  const progressEl = document.getElementById("replay-progress");
  const reportEl = document.getElementById("replay-report");
  const listEl = document.getElementById("replay-list");
  const EVENTS = ["action_created", "run_updated", "run_completed", "run_failed"];
  // Why this page cannot start a replay (a viewer's, or a run with no code), said in the
  // panel and when r is pressed: a disabled button's title alone is seen by hovering only.
  const unavailable = button.hasAttribute("data-viewer") || button.hasAttribute("data-no-code")
    ? button.title : "";
  const NONE_YET = unavailable ? "No replay yet." : "No replay yet: press r or Simulate Replay.";
  const KIND = {
    name_mismatch: "Action name mismatch", input_mismatch: "Input mismatch",
    output_mismatch: "Output mismatch", extra: "Extra call", missing: "Missing call",
    leak: "Live call leaked", unrecorded: "Unrecorded call ran live",
    redacted: "Redacted output (PII)",
    not_replayable: "Not replayable (repr only)",
  };
  // Comparison statuses that are not divergences (titan.trace.compare).
  const NEUTRAL = { match: "✅ Match", live: "⚡ Ran live", override: "✎ Overridden",
                    forked: "⑂ Forked: ran live", replaced: "↷ Replaced by the fork",
                    not_reached: "⏸ Not reached", covered: "✅ Covered by its served parent",
                    unrecorded: "⚡ Ran live: unrecorded, as in the original" };
  const api = (id, tail) => "/api/v1/runs/" + encodeURIComponent(id) + tail;
  const href = (id) => "/runs/" + encodeURIComponent(id);
  const kindWords = (k) => KIND[k] || String(k).replace(/_/g, " ");
  const plural = T.plural;

  const s = { loaded: false, shown: null, status: null, done: 0, recorded: null, ticket: 0,
              watching: null, starting: false };

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  // -- pieces of the report -------------------------------------------------------------------
  function badge(status) {
    return el("span", { class: "badge run-status status-" + status, dataset: { status: status }, text: status });
  }
  function where(x) {
    return [x.actor, x.channel, x.name].filter((v) => v !== null && v !== undefined && v !== "").join(" · ") +
      (x.ordinal !== null && x.ordinal !== undefined ? " #" + x.ordinal : "");
  }
  function seqRef(owner, seq) {
    if (seq === null || seq === undefined) return el("span", { class: "muted", text: "—" });
    if (owner !== runId) return el("a", { class: "seq-ref mono", href: href(owner), title: "action " + seq + " of " + owner, text: "#" + seq });
    const b = el("button", { type: "button", class: "link seq-ref mono", title: "Open action " + seq + " in the inspector", text: "#" + seq });
    b.addEventListener("click", () => { T.runTabs.select("telemetry"); T.inspector.open(runId, seq, null); });
    return b;
  }
  /* A JSON text preview (maybe cut short), indented when it parses, highlighted. */
  function jsonPre(text, cls) {
    if (text === null || text === undefined) return el("pre", { class: "json empty " + cls, text: "—" });
    let shown = String(text);
    try { shown = JSON.stringify(JSON.parse(shown), null, 2); } catch (e) { /* a cut preview */ }
    const pre = el("pre", { class: "json " + cls });
    pre.append(T.json ? T.json.highlight(shown) : shown);
    return pre;
  }
  function oneLine(text) {
    if (text === null || text === undefined) return "—";
    const t = typeof text === "string" ? text : JSON.stringify(text);
    return t === undefined ? "—" : t.length > 140 ? t.slice(0, 140) + "…" : t;
  }
  const same = (a, b) => !!a && !!b && a.kind === b.kind && a.actor === b.actor &&
    a.channel === b.channel && a.name === b.name && a.ordinal === b.ordinal;

  function head(rep) {
    const set = rep.settings || {};
    const tags = [set.mode, set.code ? "code: " + set.code : null,
                  set.fork_at !== null && set.fork_at !== undefined ? "fork at #" + set.fork_at : null,
                  set.model ? "model: " + set.model : null, set.allow_live ? "allow live" : null,
                  set.verify ? "verify" : null,
                  set.overrides && set.overrides.length ? "overrides: #" + set.overrides.join(", #") : null];
    return el("div", { class: "replay-head" },
      el("a", { id: "replay-link", class: "run-id", href: href(rep.run_id), text: rep.run_id }),
      badge(rep.status),
      el("a", { class: "flag replay", href: href(rep.replay_of), text: "replay of " + rep.replay_of }),
      el("span", { class: "tags" }, ...tags.filter(Boolean).map((t) => el("span", { class: "tag", text: t }))));
  }

  /* Unknown when the master cannot tell (LLM calls of no known price: $0 would say nothing
   * was spent), a lower bound when only some of the original's were priced (cli/replay.py). */
  function savings(rep) {
    if (rep.savings_usd === null || rep.savings_usd === undefined) return "unknown";
    return ((rep.original || {}).unpriced_calls ? "≥ " : "") + T.usd(rep.savings_usd);
  }

  function metrics(rep) {
    const o = rep.original || {}, r = rep.replay || {};
    const side = (x) => plural(x.action_count || 0, "action") + " · " + T.duration(x.duration_s);
    const byKind = Object.entries(rep.divergences_by_kind || {}).filter(([, n]) => n)
      .map(([k, n]) => n + " " + kindWords(k).toLowerCase()).join(", ");
    const rows = [
      ["original_cost", "Original cost", T.runCost(o), side(o)],
      ["replay_cost", "Replay cost", T.runCost(r), side(r)],
      ["savings", "Savings", savings(rep), rep.savings_usd === null || rep.savings_usd === undefined
        ? "LLM calls of no known price: register it (titan.llm.register_price)"
        : "saved by serving recorded outputs"],
      ["divergences", "Divergences", String(rep.divergence_count || 0), byKind || "none"],
      ["live_calls", "Live calls", String(rep.live_calls || 0), rep.live_calls
        ? "ran for real, not from the recording: their cost is the replay's" : "none: nothing ran for real"],
      ["match_rate", "Match rate", T.pct(rep.match_rate),
       (rep.matched || 0).toLocaleString("en-US") + " of " + plural(rep.recorded || 0, "recorded action") + " matched"],
    ];
    // How each run ended: a replay of a failed run that completes did not reproduce it.
    if (o.status && r.status && r.status !== "running") {
      const same = o.status === r.status;
      rows.push(["outcome", "Outcome", r.status, (same ? "as the original (" : "the original: ") +
        o.status + (o.error ? ": " + o.error : "") + (same ? ")" : "")]);
    }
    return el("table", { class: "grid replay-metrics", id: "replay-metrics" },
      el("thead", {}, el("tr", {}, el("th", { text: "Metric" }), el("th", { class: "num", text: "Value" }), el("th", { text: "Detail" }))),
      el("tbody", {}, ...rows.map(([key, label, value, note]) =>
        el("tr", { dataset: { metric: key } }, el("th", { scope: "row", text: label }),
           el("td", { class: "num metric-value", text: value }), el("td", { class: "muted", text: note })))));
  }

  function fork(rep) {
    if (!rep.fork) return null;
    return el("p", { id: "replay-fork", class: "notice replay-fork" },
      "Forked at action #" + rep.fork.at + ": " + plural(rep.fork.served || 0, "call") +
      " served from the recording before it, " +
      (rep.fork.overridden ? plural(rep.fork.overridden, "call") + " given your override, " : "") +
      plural(rep.fork.live || 0, "call") + " run live from there.");
  }

  function side(title, owner, x) {
    if (!x) return el("section", { class: "div-side missing" }, el("h4", { text: title }), el("p", { class: "muted", text: "no such call" }));
    return el("section", { class: "div-side" },
      el("h4", {}, title + " ", seqRef(owner, x.seq), " ", el("span", { class: "mono", text: x.name || "" }),
         x.outcome ? el("span", { class: "badge outcome-" + x.outcome, text: x.outcome }) : null),
      el("div", { class: "json-title", text: "Inputs" }), jsonPre(x.inputs, "inputs"),
      el("div", { class: "json-title", text: "Outputs" }), jsonPre(x.outputs, "outputs"),
      x.error ? el("p", { class: "error mono div-error", text: x.error }) : null);
  }

  function diffTable(diff) {
    if (!diff || !diff.length) return null;
    const value = (v) => (v === undefined ? "—" : oneLine(JSON.stringify(v)));
    return el("table", { class: "grid diff" },
      el("thead", {}, el("tr", {}, ...["Path", "Change", "Original", "Replay"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...diff.map((d) => el("tr", { dataset: { change: d.change } },
        el("td", { class: "diff-path mono", text: d.path }), el("td", { class: "diff-change", text: d.change }),
        el("td", { class: "mono diff-old", text: d.change === "added" ? "—" : value(d.original) }),
        el("td", { class: "mono diff-new", text: d.change === "removed" ? "—" : value(d.replay) })))));
  }

  function divergences(rep) {
    const list = rep.divergences || [];
    if (!list.length) return el("p", { id: "divergences", class: "muted", text: "No divergence: the replay made the same calls with the same inputs." });
    const firstMark = list.find((d) => same(d, rep.first_divergence)) || null;
    return el("div", { id: "divergences", class: "divergences" }, ...list.map((d) => {
      const first = d === firstMark;
      return el("article", { class: "divergence" + (first ? " first" : ""), dataset: { kind: d.kind } },
        el("header", { class: "div-head" },
          el("span", { class: "badge kind", text: kindWords(d.kind) }),
          el("span", { class: "div-where mono", text: where(d) }),
          first ? el("span", { class: "flag first-flag", text: "first divergence" }) : null),
        d.message ? el("p", { class: "div-message", text: d.message }) : null,
        el("div", { class: "div-sides" }, side("Original", rep.replay_of, d.original), side("Replay", rep.run_id, d.replay)),
        diffTable(d.diff));
    }));
  }

  /* A row's action: the replay's call (its key), and for a name mismatch the recorded one
   * it stood in for first (the table showed only the replay's name). */
  function label(c) {
    const was = c.status === "name_mismatch" && c.original && c.original.name;
    return was && was !== c.name ? was + " → " + c.name : c.name;
  }

  function comparison(rep) {
    const rows = rep.comparison || [];
    const cell = (owner, x) => !x ? el("td", { class: "cmp-side muted", text: "—" }) :
      el("td", { class: "cmp-side" }, seqRef(owner, x.seq),
         el("span", { class: "cmp-val mono", title: x.inputs || "" }, el("b", { text: "in " }), oneLine(x.inputs)),
         el("span", { class: "cmp-val mono", title: x.outputs || "" }, el("b", { text: "out " }), oneLine(x.outputs)));
    const status = (st) => NEUTRAL[st] ? el("td", { class: "cmp-status", text: NEUTRAL[st] })
      : el("td", { class: "cmp-status diverged" }, "❌ Diverged", el("span", { class: "sub", text: kindWords(st) }));
    const first = rep.first_divergence;
    const table = el("table", { class: "grid comparison", id: "comparison" },
      el("thead", {}, el("tr", {}, ...["Action", "Original", "Replay", "Status"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows.map((c) => el("tr", {
        class: NEUTRAL[c.status] ? null : "diverged" + (same(Object.assign({ kind: c.status }, c), first) ? " first" : ""),
        dataset: { status: c.status } },
        el("td", { class: "cmp-action" }, el("b", { text: label(c) }), el("span", { class: "sub mono", text: where(Object.assign({}, c, { name: null })) })),
        cell(rep.replay_of, c.original), cell(rep.run_id, c.replay), status(c.status))),
        rows.length ? null : el("tr", { class: "empty" }, el("td", { colspan: 4, text: "No action recorded." }))));
    const total = rep.comparison_total || rows.length;
    return [table, total > rows.length ? el("p", { class: "muted", text: "The first " + rows.length.toLocaleString("en-US") + " of " + plural(total, "action") + "." }) : null];
  }

  function render(rep) {
    const parts = [head(rep), fork(rep)];
    if (rep.status === "running") {
      parts.push(el("p", { class: "muted", text: "The comparison follows when the replay ends." }));
    } else {
      if (rep.stopped) parts.push(el("p", { class: "warn-text", text: "Strict mode stopped the replay at its first divergence." }));
      if (rep.error) parts.push(el("div", { class: "error-box replay-run-error" }, el("b", { text: "Failed: " }), el("span", { class: "mono", text: rep.error })));
      parts.push(metrics(rep), el("h3", { text: "Divergences" }), divergences(rep),
                 el("h3", { text: "Comparison" }), ...comparison(rep));
    }
    reportEl.replaceChildren(...parts.filter(Boolean));
    reportEl.dataset.replayId = rep.run_id;
    reportEl.dataset.status = rep.status;
  }

  // -- a replay in progress -------------------------------------------------------------------
  function progress() {
    const running = s.status === "running";
    progressEl.hidden = !running;
    // A viewer's page, or a run with no code to re-execute (the title says which).
    button.disabled = running || s.starting || button.hasAttribute("data-viewer") ||
      button.hasAttribute("data-no-code");
    if (!running) return;
    progressEl.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }),
      "Replaying ", el("a", { class: "mono", href: href(s.shown), text: s.shown }), ": " +
      s.done.toLocaleString("en-US") + (s.recorded !== null ? " of " + plural(s.recorded, "recorded action") : " actions") + " replayed…");
  }

  function onEvent(msg) {
    const d = msg.data || {};
    if ((d.run_id !== undefined ? d.run_id : d.id) !== s.shown) return;
    if (msg.type === "action_created") s.done = Math.max(s.done, d.seq || 0);
    else if (d.action_count !== undefined) s.done = Math.max(s.done, d.action_count || 0);
    if (msg.type !== "action_created" && d.status && d.status !== "running") refetch();  // it ended
    progress();
  }
  const refetch = T.throttle(() => { if (s.shown) show(s.shown); }, 500);

  function watch(id) {
    if (id === runId || s.watching === id) return;  // a replay's own page: run.js relays its events
    s.watching = id;
    // On every (re)connect, first included: it may have ended before the socket opened.
    T.live({ types: EVENTS, run: id, onEvent: onEvent, onResync: refetch });
  }

  /* Show replay `id`'s report (its progress while it runs). */
  async function show(id) {
    const mine = ++s.ticket;
    s.shown = id;
    try {
      const rep = await T.getJSON(api(id, "/replay"));
      if (mine !== s.ticket) return;
      const wasRunning = s.status === "running";
      s.status = rep.status;
      s.recorded = rep.recorded !== undefined ? rep.recorded : s.recorded;
      s.done = Math.max(s.done, (rep.replay && rep.replay.action_count) || 0);
      render(rep);
      if (rep.status === "running") watch(id);
      else {
        refreshList();
        if (wasRunning) document.dispatchEvent(new CustomEvent("titan:replay-ended", { detail: { id: id } }));
      }
    } catch (err) {
      if (mine !== s.ticket) return;
      fail(err.status === 404 && id === runId ? "" : "Could not read the replay report: " + err.message);
      if (err.status === 404 && id === runId) {
        reportEl.replaceChildren(el("p", { class: "muted", text: "No replay report: this run is not a replay the master ran." }));
      }
    }
    progress();
  }

  // -- the replays of an original run ---------------------------------------------------------
  function listItem(p) {
    const set = p.settings || {};
    return el("li", { class: "replay-item" + (p.run_id === s.shown ? " current" : ""), dataset: { runId: p.run_id, status: p.status } },
      el("a", { class: "run-link mono", href: href(p.run_id), text: p.run_id }), badge(p.status),
      set.mode ? el("span", { class: "tag", text: set.mode }) : null,
      el("span", { class: "muted" }, T.timeEl(p.started_at)),
      p.action_count !== null && p.action_count !== undefined
        ? el("span", { class: "replay-actions muted", text: plural(p.action_count, "action") + " · " + T.runCost(p) }) : null,
      p.match_rate !== null && p.match_rate !== undefined ? el("span", { class: "replay-match", text: "match " + T.pct(p.match_rate) }) : null,
      p.divergence_count !== null && p.divergence_count !== undefined ? el("span", { class: "replay-divergences", text: plural(p.divergence_count, "divergence") }) : null,
      p.run_id === s.shown ? el("span", { class: "muted", text: "(shown above)" }) : null);
  }
  async function refreshList() {
    if (!listEl) return null;
    try {
      const d = await T.getJSON(api(target, "/replays"));
      const items = d.replays || [];
      listEl.replaceChildren(...(items.length ? items.map(listItem)
        : [el("li", { class: "replay-none muted", text: NONE_YET })]));
      return items;
    } catch (err) {
      return null;  // the server-rendered list stays
    }
  }

  // -- starting one ---------------------------------------------------------------------------
  async function start() {
    if (unavailable) { fail(unavailable); return; }
    if (button.disabled) return;
    s.starting = true;
    fail("");
    progress();
    try {
      const got = await T.api("POST", api(target, "/replay"), { mode: modeSel.value, code: "recorded" });
      if (isReplay) { location.href = href(got.run_id) + "#simulation"; return; }
      T.toast("Replay " + got.run_id + " started");
      s.ticket++;
      Object.assign(s, { shown: got.run_id, status: got.status || "running", done: 0,
                         recorded: Number(panel.dataset.recorded) || null });
      reportEl.replaceChildren();
      watch(got.run_id);
      refreshList();
      show(got.run_id);  // it may have ended already: a short run
    } catch (err) {
      fail(err.message);  // a 409 says why: "Replay not available: …"
    } finally {
      s.starting = false;
      progress();
    }
  }

  async function firstLoad() {
    if (s.loaded) return;
    s.loaded = true;
    if (isReplay) { show(runId); return; }
    const latest = listEl ? listEl.querySelector(".replay-item") : null;
    if (latest) show(latest.dataset.runId);
    else reportEl.replaceChildren(el("p", { class: "muted replay-unavailable",
      text: unavailable || "Replay this run to compare it with its recording." }));
  }

  button.addEventListener("click", start);
  document.addEventListener("titan:tab", (e) => { if (e.detail.name === "simulation") firstLoad(); });
  document.addEventListener("titan:simulate", () => { firstLoad(); start(); });
  // A replay of this run started or ended elsewhere (the CLI, a script, another tab): the
  // list says so; the report shows it when it showed none yet.
  const relist = T.throttle(refreshList, 500);
  document.addEventListener("titan:replay-event", (e) => {
    relist();
    if (s.loaded && !s.shown && e.detail.data) show(e.detail.data.id);
  });
  if (isReplay) {
    document.addEventListener("titan:run-event", (e) => { if (s.loaded) onEvent(e.detail); });
    document.addEventListener("titan:run-resync", () => { if (s.loaded) refetch(); });
  }
})();
