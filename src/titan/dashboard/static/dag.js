/* The DAG visualizer: one run's graph (drawn by graph.js, one window at a time, from the
 * layout the server made), its jobs' states kept live, a job's panel, the approval banner and
 * the run's files.
 */
(function () {
  "use strict";
  const T = window.Titan;

  const data = JSON.parse(document.getElementById("dag-data").textContent);
  const L = data.layout;
  const n = L.id.length;
  const dagId = data.dag.id;
  const graph = document.getElementById("graph");
  const state = L.state.slice();
  const byId = new Map();
  for (let i = 0; i < n; i++) byId.set(L.id[i], i);
  let selected = -1;

  const view = new T.Graph(graph, {
    node(d, i) {
      d.dataset.jobId = L.job[i];
      d.dataset.id = L.id[i];
      d.dataset.state = state[i];
      d.title = L.job[i] + " — " + state[i];
      d.tabIndex = 0;  // Tab reaches the jobs in view; Enter or Space opens one's panel
      d.setAttribute("role", "button");
      d.setAttribute("aria-label", L.job[i] + ", " + state[i] + ": open its details and logs");
      d.firstChild.textContent = L.job[i];
      d.classList.toggle("selected", i === selected);
    },
  });
  view.setLayout(L);

  // -- header: status badge, counts, run picker -----------------------------------------------
  const runSelect = document.getElementById("run-select");
  const counts = {};
  for (const s of state) counts[s] = (counts[s] || 0) + 1;
  function showCounts() {
    for (const span of document.querySelectorAll("#dag-counts .count")) {
      const k = counts[span.dataset.state] || 0;
      span.hidden = !k;
      span.querySelector("b").textContent = k.toLocaleString("en-US");
    }
  }
  function setStatus(status) {
    const badge = document.getElementById("dag-status");
    badge.dataset.status = status;
    badge.textContent = status;
    const cancel = document.querySelector("button[data-action=cancel-dag]");
    if (cancel) cancel.hidden = !(status === "WAITING" || status === "RUNNING");
    // This run's option, not the picked one: after Back the picker may still hold the run
    // picked before, until pageshow puts it back (#1 was relabelled "#2 · FAILED").
    const opt = runSelect.querySelector('option[value="' + data.dag.run + '"]');
    if (opt) opt.textContent = "#" + data.dag.run + " · " + status;
  }
  // "running for" ticks while the DAG runs and turns to "took" once it has finished (the
  // header was rendered once and said "running for 1.6 s" for ever).
  const timing = document.getElementById("dag-timing");
  function showTiming(dag) {
    if (!timing) return;
    if (dag) {
      timing.dataset.startedAt = dag.started_at == null ? "" : dag.started_at;
      timing.dataset.finishedAt = dag.finished_at == null ? "" : dag.finished_at;
    }
    const started = Number(timing.dataset.startedAt), finished = Number(timing.dataset.finishedAt);
    if (!timing.dataset.startedAt) return;
    const end = timing.dataset.finishedAt ? finished : Date.now() / 1000;
    timing.hidden = false;
    document.getElementById("dag-duration-label").textContent =
      timing.dataset.finishedAt ? "took" : "running for";
    document.getElementById("dag-duration").textContent = T.duration(Math.max(0, end - started));
  }
  setInterval(() => { if (timing && !timing.dataset.finishedAt) showTiming(null); }, 1000);
  runSelect.addEventListener("change", () => {
    location.href = runSelect.dataset.base + "?run=" + encodeURIComponent(runSelect.value);
  });
  // The picker says the address's run, after Back and Forward too: the page comes back from
  // the back/forward cache with the run picked before leaving it (as live.js's filter forms).
  window.addEventListener("pageshow", () => { runSelect.value = String(data.dag.run); });

  // -- job panel, approval banner, files -------------------------------------------------------
  const live = T.live({
    types: ["job_updated", "dag_updated", "dag_created", "log_lines"], dag: dagId,
    dagName: data.dag.name,  // the status of its other runs, for the run picker
    onEvent: onEvent, onResync: resync,
  });
  const panel = new T.JobView(document.getElementById("job-panel"), live);
  const banner = new T.ApprovalBanner(document.getElementById("approval-banner"));

  function select(i) {
    const was = selected;
    selected = i;
    if (was >= 0) view.redraw(was);
    if (i >= 0) view.redraw(i);
  }
  function openJob(i) {
    select(i);
    history.replaceState(null, "", "#job=" + L.id[i]);
    panel.open(L.id[i]);
  }
  view.canvas.addEventListener("click", (e) => {
    const d = e.target.closest(".node");
    if (d) openJob(byId.get(Number(d.dataset.id)));
  });
  view.canvas.addEventListener("keydown", (e) => {
    const d = e.target.closest(".node");
    if (!d || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();  // Space would scroll the graph
    openJob(byId.get(Number(d.dataset.id)));
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.root.hidden) closePanel();
  });
  function closePanel() {
    panel.close();
    select(-1);
    history.replaceState(null, "", location.pathname + location.search);
  }
  document.addEventListener("click", (e) => {
    if (e.target.closest("[data-action=close-panel]")) closePanel();
  });

  // Which gate the banner shows: the one it shows while it still waits, else the first.
  async function pickGate(approvals) {
    const waiting = [];
    for (let i = 0; i < n; i++) if (state[i] === "WAITING_APPROVAL") waiting.push(L.id[i]);
    if (!waiting.length) return banner.hide();
    const keep = banner.current();
    const id = waiting.includes(keep) ? keep : waiting[0];
    let gate = (approvals || []).find((g) => g.id === id);
    if (!gate) {
      try { gate = await T.getJSON("/api/v1/jobs/%23" + id); } catch (err) { return; }
    }
    if (state[byId.get(id)] === "WAITING_APPROVAL") banner.show(gate, waiting.length - 1);
  }

  function showFiles(files) {
    const section = document.getElementById("files");
    const tbody = section.querySelector("tbody");
    tbody.replaceChildren();
    for (const f of files) {
      // The page's own data says "job", GET /files (its live refresh) "job_id".
      const job = f.job ?? f.job_id;
      tbody.append(T.el("tr", { class: "file-row", dataset: { fileId: f.id } },
        T.el("td", {}, T.el("a", { class: "file", href: "/api/v1/blobs/" + f.sha256, download: f.name, text: f.name }),
             f.key ? " " : null, f.key ? T.el("span", { class: "tag", title: "published under this store key", text: f.key }) : null),
        T.el("td", { class: "num", text: T.size(f.size) }),
        T.el("td", {}, T.timeEl(f.created_at)),
        T.el("td", {}, job ? T.el("a", { href: "/jobs/" + job, text: f.created_by || job })
          : f.created_by ? f.created_by : T.el("span", { class: "muted", text: "—" }))));
    }
    section.querySelector(".files-empty").hidden = files.length > 0;
  }
  const refreshFiles = T.throttle(async () => {
    try { showFiles((await T.getJSON("/api/v1/files?dag_id=" + dagId + "&limit=500")).files); } catch (err) { /* next event retries */ }
  }, 1000);

  function setState(i, s) {
    const old = state[i];
    if (old === s) return;
    state[i] = s;
    counts[old]--;
    counts[s] = (counts[s] || 0) + 1;
    view.redraw(i);
  }

  // Events that arrive while a resync's snapshot is on its way: replayed over it, since the
  // snapshot may predate them (each event carries a whole new state, so replaying in order
  // ends on the newest one whether or not the snapshot had it).
  // One buffer per resync in flight (a reconnect may start another before the first ends).
  const replays = new Set();

  function onEvent(msg) {
    if (msg.type !== "log_lines") for (const buffer of replays) buffer.push(msg);
    apply(msg);
    panel.onEvent(msg);
  }

  function apply(msg) {
    const ev = msg.data;
    if (msg.type === "job_updated") {
      const i = byId.get(ev.id);
      if (i === undefined) return;
      const old = state[i];
      setState(i, ev.state);
      showCounts();
      if (old === "WAITING_APPROVAL" || ev.state === "WAITING_APPROVAL") pickGate();
      if (T.TERMINAL.has(ev.state)) refreshFiles();
    } else if (msg.type === "dag_updated" && ev.id === dagId) {
      setStatus(ev.status);
      // Its start and end times are not in the event: read them once it starts or ends.
      const running = ev.status === "RUNNING" && !timing.dataset.startedAt;
      if (running || !(ev.status === "WAITING" || ev.status === "RUNNING")) resync();
    } else if (msg.type === "dag_updated" && ev.name === data.dag.name) {
      runOption(ev.run, ev.status);  // another run of it: "#2 · new" said new for ever
    } else if (msg.type === "dag_created" && ev.name === data.dag.name) {
      runOption(ev.run, null);
    }
  }
  /* Another run's entry in the picker: its status, or "new" until its first one. Kept in
   * order, newest first, whichever of its events arrives first. */
  function runOption(run, status) {
    let opt = runSelect.querySelector('option[value="' + run + '"]');
    if (!opt) {
      opt = T.el("option", { value: run, text: "#" + run + " · new" });
      const after = [...runSelect.options].find((o) => Number(o.value) < run);
      runSelect.insertBefore(opt, after || null);
    }
    if (status) opt.textContent = "#" + run + " · " + status;
  }

  // After a (re)connect or a resync, events may have been missed: refetch the JSON twin.
  async function resync() {
    const seen = [];
    replays.add(seen);
    let fresh;
    try {
      fresh = await T.getJSON(location.pathname + ".json?run=" + data.dag.run);
    } catch (err) {
      return;
    } finally {
      replays.delete(seen);
    }
    const st = fresh.layout.state;
    if (fresh.layout.id.length === n) for (let i = 0; i < n; i++) setState(i, st[i]);
    setStatus(fresh.dag.status);
    showTiming(fresh.dag);
    for (const msg of seen) apply(msg);
    showCounts();
    pickGate(fresh.approvals);
    showFiles(fresh.files);
    if (panel.id !== null) panel.reload();
  }

  T.onAction = (action) => {
    if (action === "approve" || action === "reject") banner.hide();
    if (panel.id !== null) panel.reload();
  };

  // #job=<id>, as the panel writes it, or #job=<the job's name> (what a person types: a job
  // id within the DAG): #job=train opened nothing.
  const m = /^#job=(.+)$/.exec(location.hash);
  let wanted;
  if (m) {
    let key = m[1];
    try { key = decodeURIComponent(key); } catch (e) { /* kept as typed */ }
    wanted = /^\d+$/.test(key) && byId.has(Number(key)) ? byId.get(Number(key)) : L.job.indexOf(key);
  }
  if (wanted !== undefined && wanted >= 0) {
    const i = wanted;
    view.reveal(i);
    view.render();
    openJob(i);
  }
})();
