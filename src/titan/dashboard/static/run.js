/* One run (/runs/<id>): its live header and its telemetry, a virtualised list of actions.
 *
 * A run may hold tens of thousands of actions. The list is a scroll container as tall as
 * all of them — rows have a fixed height, an expanded row a fixed extra — and only the rows
 * in view (plus a margin) exist in the DOM. Their data comes from the actions API a page at
 * a time as the viewport reaches it, cached by page; search and the outcome filter start a
 * new list that the server filters. A run's actions only ever append, so live updates
 * re-read the last page (which also says how many match now) and the list grows; when the
 * view was at the bottom it follows.
 */
(function () {
  "use strict";
  const T = window.Titan, el = T.el;
  const runId = document.body.dataset.runId;
  const scroller = document.getElementById("action-scroll");
  const canvas = document.getElementById("action-canvas");
  const search = document.getElementById("action-search");
  const outcomeSel = document.getElementById("outcome-filter");
  const expandBtn = document.getElementById("expand-all");
  const countEl = document.getElementById("action-count");
  const emptyEl = document.getElementById("actions-empty");
  const PAGE = Number(scroller.dataset.pageSize) || 200;
  const ROW = 34, EXTRA = 250, OVERSCAN = 10;  // px; keep in step with style.css
  const apiBase = "/api/v1/runs/" + encodeURIComponent(runId) + "/actions";

  const params = new URLSearchParams(location.search);
  search.value = params.get("q") || "";
  outcomeSel.value = params.get("outcome") || "";

  const s = {
    gen: 0, q: search.value.trim(), outcome: outcomeSel.value,
    matched: 0, known: false, total: Number(scroller.dataset.total) || 0,
    pages: new Map(), loading: new Set(), failed: new Set(),
    expandAll: false, toggled: [],  // indexes whose expanded state differs from expandAll
    selected: null,
    cursor: -1,  // the row the keyboard is on (roving tabindex): the only one Tab reaches
  };
  if (!s.q && !s.outcome) { s.matched = s.total; s.known = true; }

  // -- geometry: row i's top is i rows plus the expanded rows before it ----------------------
  function toggledBefore(i) {
    let lo = 0, hi = s.toggled.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (s.toggled[mid] < i) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function isOpen(i) {
    const k = toggledBefore(i);
    return s.expandAll !== (k < s.toggled.length && s.toggled[k] === i);
  }
  function top(i) {
    const k = toggledBefore(i);
    return i * ROW + (s.expandAll ? i - k : k) * EXTRA;
  }
  function indexAt(y) {
    let lo = 0, hi = Math.max(0, s.matched - 1);
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (top(mid) <= y) lo = mid; else hi = mid - 1; }
    return lo;
  }
  const atBottom = () => scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 2 * ROW;

  // -- data -----------------------------------------------------------------------------------
  function url(offset, limit) {
    const p = new URLSearchParams({ offset: offset, limit: limit });
    if (s.q) p.set("q", s.q);
    if (s.outcome) p.set("outcome", s.outcome);
    return apiBase + "?" + p.toString();
  }
  function rowData(i) {
    const page = s.pages.get(Math.floor(i / PAGE));
    return page ? page[i % PAGE] : undefined;
  }
  function setMatched(n) {
    if (s.known && n <= s.matched) return;  // actions only append: a smaller count is stale
    const follow = s.known && atBottom();
    s.matched = n;
    s.known = true;
    canvas.style.height = top(n) + "px";
    if (follow) scroller.scrollTop = scroller.scrollHeight;
    schedule();
  }
  async function load(p) {
    const gen = s.gen;
    s.loading.add(p);
    try {
      const d = await T.getJSON(url(p * PAGE, PAGE));
      if (gen !== s.gen) return;
      s.pages.set(p, d.actions);
      setMatched(d.matched);
    } catch (err) {
      if (gen !== s.gen) return;
      s.failed.add(p);  // not retried in a loop: the next event, resync or filter tries again
      T.toast("Could not load actions: " + err.message, "error");
    } finally {
      if (gen === s.gen) s.loading.delete(p);
      schedule();
    }
  }
  function ensure(first, last) {
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
      const page = s.pages.get(p), want = Math.min(PAGE, s.matched - p * PAGE);
      if ((!page || page.length < want) && !s.loading.has(p) && !s.failed.has(p)) load(p);
    }
  }
  /* New actions: re-read the last page we know of; it says how many match now. */
  const tail = T.throttle(() => {
    s.failed.clear();
    load(Math.floor(Math.max(0, s.matched - 1) / PAGE));
  }, 300);

  // -- rows -----------------------------------------------------------------------------------
  const two = (n, w) => String(n).padStart(w || 2, "0");
  function clock(ts) {
    const d = new Date(ts * 1000);
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) + "." + two(d.getMilliseconds(), 3);
  }
  function oneLine(value, complete) {
    if (value === null || value === undefined) return "";
    const text = complete === false ? String(value) : JSON.stringify(value);
    return text.length > 160 ? text.slice(0, 160) + "…" : text;
  }
  /* Which patterns redaction replaced in this action (seed 004's PII flags); the inspector
   * says where. */
  function piiMark(pii) {
    const found = Object.entries(pii || {});
    if (!found.length) return null;
    return el("span", { class: "pii-mark", title: "PII redacted: " + found.map(([k, n]) => k + " ×" + n).join(", "), text: "PII" });
  }
  function actionRow(a, i, open) {
    const row = el("div", { class: "action-row" + (open ? " open" : ""), role: "row",
                            dataset: { seq: a.seq, outcome: a.outcome, index: i } },
      el("div", { class: "action-line" },
        el("span", { class: "a-seq num", text: a.seq }),
        el("span", { class: "a-time", title: new Date(a.started_at * 1000).toISOString(), text: clock(a.started_at) }),
        el("span", { class: "a-actor", title: a.actor, text: a.actor }),
        el("span", { class: "a-name", title: a.name }, a.name, piiMark(a.pii)),
        el("span", { class: "a-outcome" }, el("span", { class: "badge outcome-" + a.outcome, text: a.outcome })),
        el("span", { class: "a-cost num", text: a.cost_usd === null ? "—" : T.usd(a.cost_usd) }),
        el("span", { class: "a-ms num", title: a.duration_ms.toLocaleString() + " ms",
                     text: T.duration(a.duration_ns / 1e9) }),
        el("span", { class: "a-in preview", text: oneLine(a.inputs, a.inputs_complete) }),
        el("span", { class: "a-out preview", text: a.error ? (a.error.type + ": " + a.error.message) : oneLine(a.outputs, a.outputs_complete) }),
        el("button", { type: "button", class: "a-toggle", "aria-expanded": open ? "true" : "false",
                       title: open ? "Fold" : "Show inputs and outputs", text: open ? "▾" : "▸" })));
    if (open) {
      const full = () => T.inspector.full(runId, a.seq).then((f) => f);
      row.append(el("div", { class: "action-detail" },
        T.json.block("Inputs", a.inputs, a.inputs_complete, () => full().then((f) => T.json.pretty(f.inputs, f.inputs_complete))),
        T.json.block("Outputs", a.outputs, a.outputs_complete, () => full().then((f) => T.json.pretty(f.outputs, f.outputs_complete)))));
    }
    return row;
  }
  const placeholder = (i) => el("div", { class: "action-placeholder", dataset: { index: i } },
                                el("span", { class: "muted", text: "loading #" + (i + 1) + "…" }));

  // -- rendering: only what is in view --------------------------------------------------------
  const shown = new Map();  // index -> {key, node}
  let frame = 0;
  function schedule() { if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); }); }
  function clearRows() { for (const r of shown.values()) r.node.remove(); shown.clear(); }
  function render() {
    canvas.style.height = top(s.matched) + "px";
    countEl.textContent = !s.known ? "searching…"
      : (s.q || s.outcome) ? s.matched.toLocaleString() + " of " + s.total.toLocaleString() + " actions match"
      : T.plural(s.matched, "action");
    emptyEl.hidden = !(s.known && s.matched === 0);
    emptyEl.textContent = (s.q || s.outcome) ? "No action matches."
      : status() === "running" ? "No action recorded yet: they appear here as the run records them."
      : "This run recorded no action.";  // it has ended: none will appear
    if (!s.matched) { clearRows(); return; }
    const y = scroller.scrollTop;
    const first = Math.max(0, indexAt(y) - OVERSCAN);
    const last = Math.min(s.matched - 1, indexAt(y + scroller.clientHeight) + OVERSCAN);
    for (const [i, r] of shown) if (i < first || i > last) { r.node.remove(); shown.delete(i); }
    for (let i = first; i <= last; i++) {
      const a = rowData(i), open = isOpen(i);
      const key = a ? a.seq + (open ? "+" : "") : "…";
      let r = shown.get(i);
      if (!r || r.key !== key) {
        const node = a ? actionRow(a, i, open) : placeholder(i);
        const focused = r && r.node.contains(document.activeElement);
        if (r) r.node.replaceWith(node); else canvas.append(node);
        if (focused) node.focus({ preventScroll: true });  // a row loaded or unfolded keeps the keyboard
        r = { key: key, node: node };
        shown.set(i, r);
      }
      r.node.style.top = top(i) + "px";
      r.node.classList.toggle("selected", !!a && a.seq === s.selected);
      r.node.tabIndex = i === s.cursor ? 0 : -1;
    }
    ensure(first, last);
  }

  function restart() {
    s.gen++;
    s.q = search.value.trim();
    s.outcome = outcomeSel.value;
    s.pages = new Map(); s.loading = new Set(); s.failed = new Set(); s.toggled = [];
    s.matched = 0; s.known = false; s.cursor = -1;
    clearRows();
    scroller.scrollTop = 0;
    const p = new URLSearchParams();
    if (s.q) p.set("q", s.q);
    if (s.outcome) p.set("outcome", s.outcome);
    history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : "") + location.hash);
    load(0);
  }

  function toggle(i) {
    const k = toggledBefore(i);
    if (k < s.toggled.length && s.toggled[k] === i) s.toggled.splice(k, 1);
    else s.toggled.splice(k, 0, i);
    schedule();
  }

  // -- events ---------------------------------------------------------------------------------
  scroller.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);
  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(restart, 300); });
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(typing); restart(); } });
  outcomeSel.addEventListener("change", restart);
  expandBtn.addEventListener("click", () => {
    const anchor = indexAt(scroller.scrollTop);
    s.expandAll = !s.expandAll;
    s.toggled = [];
    expandBtn.setAttribute("aria-pressed", String(s.expandAll));
    expandBtn.textContent = s.expandAll ? "Collapse all" : "Expand all";
    canvas.style.height = top(s.matched) + "px";
    scroller.scrollTop = top(anchor);
    schedule();
  });
  function inspect(i) {
    const a = rowData(i);
    if (!a) return;
    s.selected = a.seq;
    s.cursor = i;
    schedule();
    T.inspector.open(runId, a.seq, a, () => {
      s.selected = null;
      schedule();
      // Closed from its × button: the keyboard goes back to the row, not to the page's top.
      if (document.activeElement === document.body && shown.has(s.cursor)) shown.get(s.cursor).node.focus({ preventScroll: true });
    });
  }
  canvas.addEventListener("click", (e) => {
    const row = e.target.closest(".action-row");
    if (!row) return;
    const i = Number(row.dataset.index);
    if (e.target.closest(".a-toggle")) { toggle(i); return; }
    if (e.target.closest(".action-detail") || String(window.getSelection())) return;
    inspect(i);
  });
  /* The keyboard on the list (`t`, or Tab): ↑/↓ (Home/End) move along the rows, Enter
   * opens the inspector. Only the rows in view exist, so the cursor is an index: the list
   * scrolls to it and render() makes its row the focusable one. */
  function moveTo(i) {
    s.cursor = Math.max(0, Math.min(s.matched - 1, i));
    const y = top(s.cursor);
    if (y < scroller.scrollTop) scroller.scrollTop = y;
    else if (y + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = y + ROW - scroller.clientHeight;
    render();
    const r = shown.get(s.cursor);
    if (r) r.node.focus({ preventScroll: true });
  }
  scroller.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || !s.matched) return;
    const onRow = e.target !== scroller && e.target.matches(".action-row, .action-placeholder");
    const here = s.cursor >= 0 ? s.cursor : indexAt(scroller.scrollTop) - 1;
    const to = e.key === "ArrowDown" ? here + 1 : e.key === "ArrowUp" ? here - 1
      : e.key === "Home" ? 0 : e.key === "End" ? s.matched - 1 : null;
    if (to !== null) { e.preventDefault(); moveTo(to); }
    else if (e.key === "Enter" && onRow) { e.preventDefault(); inspect(Number(e.target.dataset.index)); }
  });

  // -- tabs: Telemetry, Simulation, Determinism; the address's #hash names the open one -----
  /* The other tabs' scripts (simulation.js, determinism.js) load first and hear "titan:tab"
   * when theirs opens: each fetches its data the first time, not with the page. */
  const tabs = [...document.querySelectorAll('.tabs [role="tab"]')];
  function selectTab(name, focus) {
    const chosen = document.getElementById("tab-" + name);
    if (!chosen) return;
    for (const tab of tabs) {
      const on = tab === chosen;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !on;
    }
    const hash = name === "telemetry" ? "" : "#" + name;
    if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
    if (focus) chosen.focus();
    if (name === "telemetry") schedule();  // hidden, the list had no height to fill
    document.dispatchEvent(new CustomEvent("titan:tab", { detail: { name: name } }));
  }
  T.runTabs = { select: selectTab };
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.id.slice(4)));
    tab.addEventListener("keydown", (e) => {  // the ARIA tabs pattern: arrows move along
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      e.preventDefault();
      selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length].id.slice(4), true);
    });
  }
  window.addEventListener("hashchange", () => selectTab(location.hash.slice(1) || "telemetry"));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    const t = e.target;
    if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
      if (e.key === "Escape" && t === search) search.blur();
      return;
    }
    if (e.key === "/") { e.preventDefault(); search.focus(); search.select(); }
    else if (e.key === "t") { selectTab("telemetry"); scroller.focus(); }
    else if (e.key === "s") selectTab("simulation", true);
    else if (e.key === "d") selectTab("determinism", true);
    else if (e.key === "r") { selectTab("simulation"); document.dispatchEvent(new CustomEvent("titan:simulate")); }
    else if (e.key === "Escape" && T.inspector.isOpen()) T.inspector.close();
  });

  // -- the header, live -----------------------------------------------------------------------
  const notice = document.getElementById("run-notice");
  function status() { return document.getElementById("run-summary").dataset.status; }
  function announce(before, after, fresh) {
    if (before !== "running" || after === "running") return;
    const err = fresh.querySelector(".run-error .mono");
    notice.dataset.status = after;
    notice.textContent = after === "failed" ? "This run failed" + (err ? ": " + err.textContent : ".")
      : "This run " + after + " — " + T.plural(Number(fresh.dataset.actionCount) || 0, "action") + ", " +
        fresh.querySelector("#run-cost").textContent + ".";
    notice.hidden = false;
  }
  const refreshHeader = T.throttle(() => {
    const before = status();
    T.swapRegion("run-summary", (fresh) => {
      announce(before, fresh.dataset.status, fresh);
      schedule();  // the empty list's words follow the status (drawn once the header is in)
    });
  }, 1000);
  function patchHeader(r) {
    const summary = document.getElementById("run-summary");
    if ((r.action_count || 0) < (Number(summary.dataset.actionCount) || 0)) return;
    summary.dataset.actionCount = r.action_count;
    s.total = Math.max(s.total, r.action_count || 0);
    document.getElementById("run-actions").textContent = (r.action_count || 0).toLocaleString("en-US");
    T.showCost(document.getElementById("run-cost"), r);
    document.getElementById("run-success").textContent = T.pct(r.success_rate);  // the server's rule
    schedule();
  }
  setInterval(() => {  // a running run's duration keeps counting (rewording, no fetch)
    const dd = document.getElementById("run-duration");
    if (status() === "running" && dd) dd.textContent = T.duration(Math.max(0, Date.now() / 1000 - Number(dd.dataset.startedAt)));
  }, 1000);

  // Its stages' jobs settling move the completion % in the header (re-read from the server).
  const dagIds = new Set((document.getElementById("run-summary").dataset.dagIds || "")
    .split(",").filter(Boolean).map(Number));
  T.live({
    types: ["action_created", "run_created", "run_updated", "run_completed", "run_failed",
            "job_updated", "dag_created"], run: runId,
    onEvent(msg) {
      const d = msg.data;
      if (msg.type === "job_updated" || msg.type === "dag_created") {
        if (msg.type === "dag_created" && d.agent_run_id === runId) dagIds.add(d.id);
        if (status() === "running" && dagIds.has(msg.type === "job_updated" ? d.dag_id : d.id)) {
          refreshHeader();
        }
        return;
      }
      if (d.replay_of === runId && d.id !== runId) {  // a replay of this run, made anywhere
        document.dispatchEvent(new CustomEvent("titan:replay-event", { detail: msg }));
        return;
      }
      if ((d.run_id !== undefined ? d.run_id : d.id) !== runId) return;
      if (msg.type !== "action_created") { patchHeader(d); refreshHeader(); }
      tail();
      // This run's events, for the Simulation tab of a replay (no second socket).
      document.dispatchEvent(new CustomEvent("titan:run-event", { detail: msg }));
    },
    onResync() {  // events sent while the socket was down (or not yet open) are gone
      refreshHeader();
      tail();
      document.dispatchEvent(new CustomEvent("titan:run-resync"));
    },
  });

  if (s.q || s.outcome) restart(); else { load(0); schedule(); }
  if (/^#(simulation|determinism)$/.test(location.hash)) selectTab(location.hash.slice(1));
})();
