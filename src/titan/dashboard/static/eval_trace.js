/* One evaluation task's Agent Trace and Task views, wherever they are shown: the task page
 * (/…/tasks/<task>?run=<run>) and the Data Explorer's task modal (task_modal.js), which puts
 * the same server markup — the task page's #eval-task region — in a dialog.
 *
 * Titan.evalTrace(opts) wires one view; one is shown at a time, and the document's handlers
 * act on it: the tabs (Agent Trace when the task has a run, and Task; #task selects the
 * second), the ledger's State/Changes toggle, Re-run, and live updates: while any run of the
 * task is in flight or awaits its verdict (#eval-task[data-live=true]) the region is re-read
 * every 3 s from opts.source() — open rows, the tab and each ledger's view survive — and
 * polling stops once every run is terminal and judged. Re-run posts to the button's API route
 * (the page's family), then opts.showRun shows the new run (it joins the run picker) and the
 * view follows it. With opts.inPlace the run picker switches runs in place too (the modal);
 * on the task page its links are plain links.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const POLL_MS = 3000;
  const region = () => document.getElementById("eval-task");
  let current = null;

  function applyTab(root, name) {
    const tabs = [...root.querySelectorAll('.tabs [role="tab"]')];
    const chosen = tabs.find((t) => t.id === "tab-" + name) || tabs[0];
    if (!chosen) return;
    for (const tab of tabs) {
      const on = tab === chosen;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      const panel = root.querySelector("#" + tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    }
  }

  // The ledger viewer: State (the snapshot) or Changes (the ops applied at this step).
  function setView(ledger, view) {
    ledger.dataset.view = view;
    for (const b of ledger.querySelectorAll(".ledger-view")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    ledger.querySelector(".ledger-state").hidden = view !== "state";
    ledger.querySelector(".ledger-changes").hidden = view !== "changes";
  }

  T.evalTrace = function (opts) {
    if (current) current.stop();
    const s = { tab: null, ledgers: new Map(), timer: null, stopped: false };
    const isLive = () => { const r = region(); return !s.stopped && !!r && r.dataset.live === "true"; };
    function mark(fresh) {  // Titan.swapRegion's hook: keep what the user chose
      if (s.tab) applyTab(fresh, s.tab);
      for (const [key, view] of s.ledgers) {
        const ledger = fresh.querySelector('.tool-row[data-key="' + CSS.escape(key) + '"] .ledger');
        if (ledger) setView(ledger, view);
      }
    }
    async function tick() {
      s.timer = null;
      if (s.stopped) return;
      try { await T.swapRegion("eval-task", mark, opts.source()); } catch (err) { /* offline: the next tick retries */ }
      schedule();
    }
    function schedule() { if (!s.timer && isLive()) s.timer = setTimeout(tick, POLL_MS); }
    const view = {
      opts: opts,
      selectTab(name, focus) {
        const root = region();
        if (!root || !document.getElementById("tab-" + name)) return;
        s.tab = name;
        applyTab(root, name);
        const first = root.querySelector('.tabs [role="tab"]');
        const hash = first && first.id === "tab-" + name ? "" : "#" + name;
        if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
        if (focus) document.getElementById("tab-" + name).focus();
      },
      rememberLedger(key, v) { s.ledgers.set(key, v); },
      kick() { clearTimeout(s.timer); s.timer = null; tick(); },
      onEvent(msg) {  // a run of this task started or ended: re-read at once
        const d = msg.data || {};
        if (String(d.run_id !== undefined ? d.run_id : d.id).startsWith(opts.prefix)) view.kickSoon();
      },
      stop() {
        s.stopped = true;
        clearTimeout(s.timer);
        s.timer = null;
        if (current === view) current = null;
      },
    };
    view.kickSoon = T.throttle(() => view.kick(), 1000);
    current = view;
    if (location.hash === "#task") view.selectTab("task");
    schedule();
    return view;
  };

  document.addEventListener("click", (e) => {
    const tab = e.target.closest('#eval-task .tabs [role="tab"]');
    if (tab && current) current.selectTab(tab.id.slice(4));
  });
  document.addEventListener("keydown", (e) => {
    const tab = e.target.closest && e.target.closest('#eval-task .tabs [role="tab"]');
    // Left/Right along the task page's tab row, Up/Down along the modal's left rail.
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key] || 0;
    if (!tab || !step || !current) return;
    e.preventDefault();
    const tabs = [...region().querySelectorAll('.tabs [role="tab"]')];
    current.selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length].id.slice(4), true);
  });
  document.addEventListener("click", (e) => {
    const b = e.target.closest("#eval-task .ledger-view");
    if (!b) return;
    const ledger = b.closest(".ledger"), row = b.closest(".tool-row");
    setView(ledger, b.dataset.view);
    if (row && current) current.rememberLedger(row.dataset.key, b.dataset.view);
  });
  document.addEventListener("click", (e) => {
    const option = e.target.closest("#eval-task .run-option");
    if (!option || !current || !current.opts.inPlace || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    current.opts.showRun(option.dataset.runId);
  });

  // Re-run: a fresh run of the task; the original stays in history.
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("#eval-task #rerun");
    if (!b || b.disabled || !current) return;
    const view = current;
    const header = document.querySelector("#eval-task #trace-header");
    const before = header ? header.dataset.runId : null;
    b.disabled = true;
    try {
      const got = await T.api("POST", b.dataset.url);
      T.toast("Re-run " + got.run_id + " dispatched");
      // Back returns to the run shown before. At the plain address (no ?run=, "the latest")
      // that was the latest run, which the re-run now is: name it in the address first.
      if (before) view.opts.pinRun(before);
      view.opts.showRun(got.run_id);
    } catch (err) {
      T.toast("Re-run failed: " + err.message, "error");
      b.disabled = false;
    }
  });

  if (document.body.dataset.page !== "eval_task") return;
  // -- the task page: its own URL says which run (?run=) and which tab (#task) --------------
  const view = T.evalTrace({
    source: () => location.pathname + location.search,
    prefix: document.body.dataset.evaluationId + "." + document.body.dataset.taskId + ".",
    showRun(runId) {
      const p = new URLSearchParams(location.search);
      p.set("run", runId);
      history.pushState(null, "", location.pathname + "?" + p.toString() + location.hash);
      view.kick();
    },
    pinRun(runId) {
      const p = new URLSearchParams(location.search);
      if (p.has("run")) return;
      p.set("run", runId);
      history.replaceState(null, "", location.pathname + "?" + p.toString() + location.hash);
    },
  });
  window.addEventListener("popstate", () => view.kick());
  T.live({
    types: ["run_created", "run_completed", "run_failed"],
    onEvent: (msg) => view.onEvent(msg),
    onResync(first) { if (!first) view.kickSoon(); },
  });
})();
