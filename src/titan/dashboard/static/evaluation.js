/* The Evaluations list (/evaluations), the Projects (/projects, /projects/<p>) and one
 * evaluation's Data Explorer (/evaluations/<id>, or /projects/<p>/workflows/<id>).
 *
 * The explorer's table is the server's markup: a row opens its task in the task modal
 * (task_modal.js), the optional columns (Failure mode, Ledger violations) are shown by a class
 * on the explorer that the column menu sets and this browser remembers. While a run of the
 * evaluation is in flight (or has just ended and awaits the judge's verdict) the table is
 * re-read from the server every 3 s, and stops once every run is terminal and judged; a run of it starting or ending (the live feed) re-reads it at once, and the open task modal with it.
 * An evaluation created, seeded or deleted (evaluation_updated) re-reads the lists, and the
 * explorer of the one seeded.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const page = document.body.dataset.page;
  const POLL_MS = 3000;
  const runId = (msg) => { const d = msg.data || {}; return String(d.run_id !== undefined ? d.run_id : d.id); };

  if (page === "evaluations" || page === "projects") {
    const refresh = T.throttle(() => T.swapRegion(page + "-live"), 1000);
    // An evaluation created, seeded or deleted changes the lists as much as a run does.
    T.live({ types: ["run_created", "run_completed", "run_failed", "evaluation_updated"], onEvent: refresh,
             onResync(first) { if (!first) refresh(); } });
    return;
  }
  if (page !== "evaluation") return;
  const evalId = document.body.dataset.evaluationId;
  const explorer = document.getElementById("eval-explorer");

  // -- optional columns -----------------------------------------------------------------------
  const KEY = "titan.evalColumns";
  let shown = {};
  try { shown = JSON.parse(localStorage.getItem(KEY) || "{}") || {}; } catch (e) { shown = {}; }
  const apply = (box) => explorer.classList.toggle("show-" + box.dataset.col, box.checked);
  for (const box of explorer.querySelectorAll("input[data-col]")) {
    box.checked = !!shown[box.dataset.col];
    apply(box);
    box.addEventListener("change", () => {
      apply(box);
      shown[box.dataset.col] = box.checked;
      try { localStorage.setItem(KEY, JSON.stringify(shown)); } catch (e) { /* private mode */ }
    });
  }

  // -- live: every 3 s while a run is in flight -----------------------------------------------
  let timer = null;
  const inFlight = () => {  // a run pending or running, or one awaiting its verdict
    const live = document.getElementById("eval-live");
    return !!live && live.dataset.polling === "true";
  };
  async function tick() {
    timer = null;
    try { await T.swapRegion("eval-live"); } catch (err) { /* offline: the next tick retries */ }
    schedule();
  }
  function schedule() { if (!timer && inFlight()) timer = setTimeout(tick, POLL_MS); }
  const kick = T.throttle(() => { clearTimeout(timer); timer = null; tick(); }, 1000);
  T.live({
    types: ["run_created", "run_completed", "run_failed", "evaluation_updated"],
    onEvent(msg) {
      if (msg.type === "evaluation_updated") {  // its tasks seeded (or it was edited): new rows
        if (String(msg.data.id) === evalId) kick();
        return;
      }
      if (!runId(msg).startsWith(evalId + ".")) return;
      kick();
      if (T.taskModal) T.taskModal.onEvent(msg);
    },
    onResync(first) {
      if (first) return;
      kick();
      if (T.taskModal) T.taskModal.resync();
    },
  });
  schedule();
})();
