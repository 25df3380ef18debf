/* The Data Explorer's task modal (seed 003: "Click any row to open the task modal. If at
 * least one agent run exists, an Agent Trace tab appears in the left rail.").
 *
 * A row (click, or Enter on the focused row) opens a <dialog> holding its task page's own
 * #eval-task region, fetched from the task page (?run= for an earlier run): the same markup
 * and the same script (eval_trace.js) as the task page, its tabs drawn as a left rail — Agent
 * Trace when the task has a run, and Task. The run picker and Re-run switch runs inside the
 * modal. The URL says what is open (?task=<id>&run=<run>#task), so a link to it opens it, and
 * Back and Forward move through it; Esc, the close button or a click on the backdrop close it.
 */
(function () {
  "use strict";
  const T = window.Titan;
  if (document.body.dataset.page !== "evaluation") return;
  const dialog = document.getElementById("task-modal");
  const body = document.getElementById("task-modal-body");
  const explorer = document.getElementById("eval-explorer");
  const evalId = document.body.dataset.evaluationId;
  let shown = null;  // {task, href, view}

  const params = () => new URLSearchParams(location.search);
  const rowOf = (taskId) => [...document.querySelectorAll("#eval-table tr.eval-row")]
    .find((r) => r.dataset.taskId === taskId);

  function setURL(task, run, push) {
    const p = params();
    if (task) p.set("task", task); else p.delete("task");
    // A deep link (?task=) opened the page holding its task: closing it keeps that page.
    const live = document.getElementById("eval-live");
    if (!task && !p.has("offset") && live && live.dataset.offset && live.dataset.offset !== "0") {
      p.set("offset", live.dataset.offset);
    }
    if (run) p.set("run", run); else p.delete("run");
    const query = p.toString();
    const url = location.pathname + (query ? "?" + query : "") + (task ? location.hash : "");
    if (url === location.pathname + location.search + location.hash) return;
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  function source() {
    const run = params().get("run");
    return shown.href + (run ? "?run=" + encodeURIComponent(run) : "");
  }

  async function open(taskId) {
    const row = rowOf(taskId);
    if (!row) {  // a stale or mistyped link
      T.toast("No task " + taskId + " in this workflow", "error");
      close();
      setURL(null, null, false);
      return;
    }
    if (shown && shown.view) shown.view.stop();
    shown = { task: taskId, href: row.dataset.href, view: null };
    document.getElementById("task-modal-title").textContent = taskId;
    const instruction = row.querySelector(".task .sub");
    document.getElementById("task-modal-instruction").textContent = instruction ? instruction.title : "";
    document.getElementById("task-modal-page").href = row.dataset.href;
    body.replaceChildren(T.el("div", { id: "eval-task", class: "modal-loading" }, "Loading…"));
    if (!dialog.open) dialog.showModal();
    const mine = shown;
    let why = null;
    const ok = await T.swapRegion("eval-task", null, source(), (reason) => { why = reason; });
    if (shown !== mine) return;  // closed, or another task opened, while this one loaded
    if (!ok) {
      const r = document.getElementById("eval-task");
      if (r) {
        r.classList.add("error-box");
        r.setAttribute("role", "alert");
        r.textContent = "This task could not be loaded: " + (why || "open its page for the reason.");
      }
      return;
    }
    mine.view = T.evalTrace({
      source: source,
      prefix: evalId + "." + taskId + ".",
      inPlace: true,
      showRun(runId) {
        setURL(taskId, runId, true);
        mine.view.kick();
      },
      pinRun(runId) {  // before a re-run: Back returns to this run, not to "the latest"
        if (!params().has("run")) setURL(taskId, runId, false);
      },
    });
  }

  function close() { if (dialog.open) dialog.close(); }

  // Every way the dialog closes (Esc, the button, the backdrop, Back) ends here.
  dialog.addEventListener("close", () => {
    if (shown && shown.view) shown.view.stop();
    shown = null;
    body.replaceChildren();
    if (params().has("task")) setURL(null, null, true);
  });
  document.getElementById("task-modal-close").addEventListener("click", close);
  dialog.addEventListener("click", (e) => { if (e.target === dialog) close(); });  // the backdrop

  function openFromRow(row) {
    setURL(row.dataset.taskId, null, true);
    open(row.dataset.taskId);
  }
  explorer.addEventListener("click", (e) => {
    const row = e.target.closest("tr.eval-row");
    if (!row || e.target.closest("a, button, input, summary") || String(window.getSelection())) return;
    openFromRow(row);
  });
  explorer.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.matches && e.target.matches("tr.eval-row")) openFromRow(e.target);
  });

  function sync() {  // the URL is the truth: open, switch or close to match it
    const task = params().get("task");
    if (!task) close();
    else if (!shown || shown.task !== task) open(task);
    else if (shown.view) shown.view.kick();
  }
  window.addEventListener("popstate", sync);

  T.taskModal = {
    onEvent(msg) { if (shown && shown.view) shown.view.onEvent(msg); },
    resync() { if (shown && shown.view) shown.view.kickSoon(); },
  };
  if (params().has("task")) sync();
})();
