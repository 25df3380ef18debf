/* Agent Runs, live: on agent_run_updated (a run's stage created or changed, or the run's own
 * status) and run_created (a run without stages, listed with ?stages=all), refetch /agents.json
 * (at most every 500 ms) and re-render the rows with the same markup as agents.html; and
 * every 3 s while a run shown is in flight (seed 000: "auto-refreshes every 3 seconds"): a
 * job ending inside a stage that stays RUNNING changes what the box says (executing,
 * queued, waiting for a worker) with no event of the DAG's.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const el = T.el;
  const box = document.getElementById("agent-runs");
  const limit = Number(box.dataset.limit) || 50, offset = Number(box.dataset.offset) || 0;
  const stages = box.dataset.stages || "with";  // "all": runs without stages listed too
  const include = document.getElementById("include-stageless");
  if (include) include.addEventListener("change", () => include.form.requestSubmit());

  function dagHref(name, run) {
    return "/dags/DAG-" + encodeURIComponent(name) + "?run=" + run;
  }

  /* The run's own page (an agent run is a run of the registry): run_href's quoting. */
  function runHref(id) {
    return "/runs/" + encodeURIComponent(id);
  }

  function runRow(r) {
    const head = el("div", { class: "run-head" },
      el("a", { class: "run-id", href: runHref(r.id), text: r.id }),
      el("span", { class: "badge", dataset: { status: r.status }, text: r.status }),
      r.iteration === null ? null : el("span", { class: "run-iter", text: "iteration " + r.iteration }),
      el("span", { class: "run-started" }, "started ", T.timeEl(r.created_at)));
    for (const f of r.failed) {
      head.append(el("a", { class: "run-failure", href: dagHref(f.name, f.run), dataset: { status: f.status },
        text: ({ PARTIAL: "◐", CANCELLED: "⊘" }[f.status] || "✗") + " " + f.label + " " + f.status + (f.why ? " (" + f.why + ")" : "") }));
    }
    const stages = el("div", { class: "stages" });
    r.stages.forEach((s, i) => {
      if (i > 0) stages.append(el("span", { class: "arrow", "aria-hidden": "true", text: "→" }));
      stages.append(el("a", { class: "stage", href: dagHref(s.name, s.run),
                              dataset: { label: s.label, status: s.status, executing: s.executing },
                              title: "DAG-" + s.name + " #" + s.run + ": " + s.status + (s.hint ? " (" + s.hint + ")" : "") },
        el("span", { class: "stage-label", text: s.label }),
        el("span", { class: "stage-status" }, el("span", { class: "stage-symbol", "aria-hidden": "true", text: s.symbol }), " " + s.status),
        s.hint ? el("span", { class: "stage-hint", text: s.hint }) : null));
    });
    if (!r.stages.length) stages.append(el("span", { class: "muted stages-note", text: r.stages_note }));
    return el("div", { class: "agent-run" + (r.id === targeted() ? " targeted" : ""), id: ROW + r.id,
                       dataset: { runId: r.id, status: r.status } }, head, stages);
  }

  /* A row's element id is its run id behind a prefix: a run id is chosen by whoever submits
   * it, and a bare one may be one of this page's own ids ("empty-state" hid its row). */
  const ROW = "run-";
  function rowOf(id) {
    return box.querySelector('.agent-run[data-run-id="' + CSS.escape(id) + '"]');
  }
  /* The run /agents#run-<id> names stays outlined: CSS :target alone let go of it once a
   * refresh replaced the row it had matched (dashboard.md: the page scrolls to and outlines
   * it). A link from before the prefix, /agents#<id>, still finds its run; with no hash,
   * the run ?run=<id> opened this page for is the one. */
  const focus = box.dataset.focus || "";
  function hashed() {
    try { return decodeURIComponent(location.hash.slice(1)); } catch (err) { return ""; }
  }
  function targeted() {
    const hash = hashed();
    if (!hash) return focus;
    return hash.startsWith(ROW) && rowOf(hash.slice(ROW.length)) ? hash.slice(ROW.length) : hash;
  }
  function outline(scroll) {
    const id = targeted();
    for (const row of box.querySelectorAll(".agent-run")) row.classList.toggle("targeted", row.dataset.runId === id);
    const row = id && rowOf(id);
    if (scroll && row) row.scrollIntoView();  // the browser finds only #run-<id> itself
    else if (scroll && id) findElsewhere(hashed());
  }
  /* A run the hash names that is not on this page (newer runs pushed it off the first): open
   * the page that holds it, as ?run=<id> does, instead of scrolling to nothing. */
  async function findElsewhere(hash) {
    // #run-<id>; or a run whose own id begins with "run-", linked the old way (#<id>).
    for (const id of hash.startsWith(ROW) ? [hash.slice(ROW.length), hash] : [hash]) {
      if (id === focus) return;  // this is its page, opened for it: never go round again
      try {
        await T.getJSON("/agents.json?limit=1&stages=" + stages + "&run=" + encodeURIComponent(id));
      } catch (err) {
        if (err.status === 404) continue;
        return;  // the master is not answering: the page stays as it is
      }
      if (hashed() !== hash) return;  // the user went elsewhere meanwhile
      const q = new URLSearchParams(location.search);
      q.delete("offset");
      q.set("run", id);
      location.replace("/agents?" + q + "#" + ROW + encodeURIComponent(id));
      return;
    }
    T.toast("no agent run " + JSON.stringify(hash.startsWith(ROW) ? hash.slice(ROW.length) : hash), "error");
  }
  window.addEventListener("hashchange", () => outline(true));
  outline(true);

  function render(d) {
    box.replaceChildren(...d.runs.map(runRow));
    const stageless = document.getElementById("stageless-state");
    if (stageless) stageless.hidden = d.runs.length > 0 || d.offset > 0;
    document.getElementById("empty-state").hidden = d.runs.length > 0 || d.offset > 0 || !!stageless;
    const range = document.querySelector(".pager .range");
    if (range) range.textContent = d.range;  // the server's words, past the end included
  }

  let asked = 0;
  const refresh = T.throttle(async () => {
    const ticket = ++asked;  // fetches can overlap: only the newest is shown
    try {
      const d = await T.getJSON("/agents.json?limit=" + limit + "&offset=" + offset + "&stages=" + stages);
      if (ticket === asked) render(d);
    } catch (err) { /* the next event or reconnect tries again */ }
  }, 500);
  // agent_run_updated says each change of a row: its stages' and its run's own status (a
  // driver ending its run changes no DAG). Not run_updated: an action batch changes no row.
  T.live({ types: ["agent_run_updated", "run_created"], onEvent: refresh, onResync: refresh });
  const IN_FLIGHT = '.agent-run[data-status="RUNNING"], .agent-run[data-status="WAITING"]';
  setInterval(() => {
    if (document.visibilityState === "visible" && box.querySelector(IN_FLIGHT)) refresh();
  }, 3000);
})();
