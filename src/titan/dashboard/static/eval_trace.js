/* One evaluation task (/evaluations/<id>/tasks/<task>?run=<run>): its Agent Trace and Task tabs.
 *
 * Everything is the server's markup (eval_task.html); this script adds the tabs, the ledger's
 * State/Changes toggle, Re-run, and live updates: while any run of the task is in flight or
 * awaits its verdict (#eval-task[data-live=true]) the page's region is re-read every 3 s —
 * open rows, the tab and each ledger's view survive — and polling stops once every run is
 * terminal and judged. Re-run
 * posts to the API, then shows the new run (it joins the run picker) and follows it.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const POLL_MS = 3000;
  const evalId = document.body.dataset.evaluationId;
  const taskId = document.body.dataset.taskId;
  const enc = encodeURIComponent;
  const s = { tab: null, ledgers: new Map(), timer: null };
  const region = () => document.getElementById("eval-task");

  // -- tabs: Agent Trace (when the task has a run) and Task; #task selects the second --------
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
  function selectTab(name, focus) {
    const root = region();
    if (!root || !document.getElementById("tab-" + name)) return;
    s.tab = name;
    applyTab(root, name);
    const first = root.querySelector('.tabs [role="tab"]');
    const hash = first && first.id === "tab-" + name ? "" : "#" + name;
    if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
    if (focus) document.getElementById("tab-" + name).focus();
  }
  document.addEventListener("click", (e) => {
    const tab = e.target.closest('#eval-task .tabs [role="tab"]');
    if (tab) selectTab(tab.id.slice(4));
  });
  document.addEventListener("keydown", (e) => {
    const tab = e.target.closest && e.target.closest('#eval-task .tabs [role="tab"]');
    const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!tab || !step) return;
    e.preventDefault();
    const tabs = [...region().querySelectorAll('.tabs [role="tab"]')];
    selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length].id.slice(4), true);
  });

  // -- the ledger viewer: State (the snapshot) or Changes (the ops applied at this step) ------
  function setView(ledger, view) {
    ledger.dataset.view = view;
    for (const b of ledger.querySelectorAll(".ledger-view")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    ledger.querySelector(".ledger-state").hidden = view !== "state";
    ledger.querySelector(".ledger-changes").hidden = view !== "changes";
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest(".ledger-view");
    if (!b) return;
    const ledger = b.closest(".ledger"), row = b.closest(".tool-row");
    setView(ledger, b.dataset.view);
    if (row) s.ledgers.set(row.dataset.key, b.dataset.view);
  });

  // -- live: re-read the region every 3 s while a run of the task is in flight ---------------
  function mark(fresh) {  // Titan.swapRegion's hook: keep what the user chose
    if (s.tab) applyTab(fresh, s.tab);
    for (const [key, view] of s.ledgers) {
      const ledger = fresh.querySelector('.tool-row[data-key="' + CSS.escape(key) + '"] .ledger');
      if (ledger) setView(ledger, view);
    }
  }
  const isLive = () => { const r = region(); return !!r && r.dataset.live === "true"; };
  async function tick() {
    s.timer = null;
    try { await T.swapRegion("eval-task", mark); } catch (err) { /* offline: the next tick retries */ }
    schedule();
  }
  function schedule() { if (!s.timer && isLive()) s.timer = setTimeout(tick, POLL_MS); }
  function kick() { clearTimeout(s.timer); s.timer = null; tick(); }
  const kickSoon = T.throttle(kick, 1000);

  // -- Re-run: a fresh run of the task; the original stays in history ------------------------
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("#rerun");
    if (!b || b.disabled) return;
    b.disabled = true;
    try {
      const got = await T.api("POST", "/api/v1/evaluations/" + enc(b.dataset.evaluation) + "/tasks/" +
                              enc(b.dataset.task) + "/runs/" + enc(b.dataset.run) + "/re-run");
      T.toast("Re-run " + got.run_id + " dispatched");
      const p = new URLSearchParams(location.search);
      p.set("run", got.run_id);
      history.pushState(null, "", location.pathname + "?" + p.toString() + location.hash);
      kick();
    } catch (err) {
      T.toast("Re-run failed: " + err.message, "error");
      b.disabled = false;
    }
  });
  window.addEventListener("popstate", kick);

  T.live({
    types: ["run_created", "run_completed", "run_failed"],
    onEvent(msg) {
      const d = msg.data || {};
      if (String(d.run_id !== undefined ? d.run_id : d.id).startsWith(evalId + "." + taskId + ".")) kickSoon();
    },
    onResync(first) { if (!first) kickSoon(); },
  });
  if (location.hash === "#task") selectTab("task");
  schedule();
})();
