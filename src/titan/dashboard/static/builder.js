/* The DAG builder (/dags/new): draw a DAG, have the master check it, export it, submit it.
 *
 * The browser keeps the draft; the master judges it. Every change is sent to
 * POST /dags/new/check, which answers with the layout (the visualizer's, drawn by graph.js),
 * every problem (by the rules POST /api/v1/dags and `titan submit` apply), the cycle if there
 * is one, the pipeline YAML and, when nothing is wrong, the body to submit. A reply is used
 * only if the draft has not changed since it was asked for: a newer check is then on its way.
 *
 * Jobs hold their parents by a key of their own, not by job id, so renaming a job keeps its
 * edges; ids are put in only when the draft is sent. The draft is kept in sessionStorage: a
 * reload does not lose it, submitting clears it.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const root = document.getElementById("builder");
  const nameInput = document.getElementById("dag-name");
  const status = document.getElementById("builder-status");
  const submitButton = document.getElementById("submit-dag");
  const exportButton = document.getElementById("export-yaml");
  const STORED = "titan.builder.draft";
  // A job's own bookkeeping here; the master gets every other field as it is (an imported
  // service's settings too, which the form does not show).
  const LOCAL = new Set(["key", "parents", "previous_type"]);

  let draft = restore() || { name: "", jobs: [] };
  let nextKey = draft.jobs.reduce((most, j) => Math.max(most, j.key + 1), 0);
  let version = 0;     // bumped by every change; a check's reply must match it
  let reply = null;    // the latest check's answer for the draft as it is
  let selected = -1;   // the job whose form is open
  let edge = null;     // the selected edge: [parent index, child index]
  let marks = { jobs: new Set(), cycle: new Set(), cycleEdges: new Set() };

  const graph = new T.Graph(document.getElementById("graph"), {
    hitEdges: true,
    node(el, i) {
      const job = draft.jobs[i];
      if (!job) return;  // a layout older than the draft: the next reply redraws it
      el.dataset.jobId = job.job_id;
      el.dataset.kind = T.isGate(job) ? "gate" : "script";
      el.firstChild.textContent = job.job_id || "(no id)";
      el.title = (job.job_id || "(no id)") + (T.isGate(job) ? " — approval gate" : " — " + (job.filename || "no script"));
      el.classList.toggle("selected", i === selected);
      el.classList.toggle("invalid", marks.jobs.has(i));
      el.classList.toggle("cycle", marks.cycle.has(job.job_id));
      if (!el.querySelector(".port")) {
        el.append(T.el("span", { class: "port", title: "Drag onto another job: it will depend on this one" }));
      }
    },
    edgeClass(p, c) {
      if (edge && edge[0] === p && edge[1] === c) return "selected";
      return marks.cycleEdges.has(p + ">" + c) ? "cycle" : "";
    },
  });
  const dragLine = graph.svg.querySelector(".drag");

  const form = new T.JobForm(document.getElementById("job-form"), {
    edited(field) {
      // An id or kind shows on the node at once; the graph itself waits for the master.
      changed();
      if (field === "job_id" || field === "kind") graph.redraw(selected);
    },
    removeJob() { removeJob(selected); },
    closed() { select(-1); },
    removeParent(key) {
      const job = draft.jobs[selected];
      job.parents = job.parents.filter((k) => k !== key);
      form.refresh();
      changed();
    },
    addParent(key) {
      connect(draft.jobs.findIndex((j) => j.key === key), selected);
    },
    candidates() {
      const job = draft.jobs[selected];
      return draft.jobs.filter((j) => j !== job && !job.parents.includes(j.key))
        .map((j) => ({ key: j.key, label: j.job_id || "(no id)" }));
    },
    upload: upload,
    parentName(key) {
      const parent = draft.jobs.find((j) => j.key === key);
      return parent ? parent.job_id || "(no id)" : "?";
    },
  });

  // -- the draft ----------------------------------------------------------------------------
  function restore() {
    try {
      const kept = JSON.parse(sessionStorage.getItem(STORED));
      return kept && Array.isArray(kept.jobs) ? kept : null;
    } catch (err) {
      return null;
    }
  }

  function wire() {
    const byKey = new Map(draft.jobs.map((j) => [j.key, j.job_id]));
    return {
      name: draft.name,
      jobs: draft.jobs.map((job) => {
        const out = { parents: job.parents.map((k) => byKey.get(k)) };
        for (const [field, value] of Object.entries(job)) if (!LOCAL.has(field)) out[field] = value;
        return out;
      }),
    };
  }

  /* Jobs from the master (an imported file): parents by id become parents by key. */
  function adopt(name, jobs) {
    const keys = new Map();
    const made = jobs.map((job) => {
      const key = nextKey++;
      keys.set(job.job_id, key);
      return Object.assign({}, job, { key: key });
    });
    for (const job of made) job.parents = job.parents.map((id) => keys.get(id));
    draft = { name: name, jobs: made };
    nameInput.value = name;
    select(-1);
    changed();
  }

  function changed() {
    version++;
    root.dataset.state = "checking";
    try { sessionStorage.setItem(STORED, JSON.stringify(draft)); } catch (err) { /* full: keep going */ }
    checkSoon();
  }

  function addJob() {
    const ids = new Set(draft.jobs.map((j) => j.job_id));
    let n = draft.jobs.length + 1;
    while (ids.has("job" + n)) n++;
    draft.jobs.push({ key: nextKey++, job_id: "job" + n, filename: "", job_type: "RUN_PAYLOAD",
                      args: "", parents: [], requirement: "GENERAL", priority: 1, retries: null,
                      timeout: null, hitl_message: null, max_wait_seconds: null });
    changed();
    select(draft.jobs.length - 1);
  }

  function removeJob(i) {
    const gone = draft.jobs[i];
    if (!gone) return;
    draft.jobs.splice(i, 1);
    for (const job of draft.jobs) job.parents = job.parents.filter((k) => k !== gone.key);
    edge = null;
    select(-1);
    changed();
  }

  /* Job `to` depends on job `from` from now on. */
  function connect(from, to) {
    const parent = draft.jobs[from], child = draft.jobs[to];
    if (!parent || !child || from === to || child.parents.includes(parent.key)) return;
    child.parents.push(parent.key);
    if (to === selected) form.refresh();
    changed();
  }

  function removeEdge() {
    if (!edge) return;
    const [p, c] = edge;
    const child = draft.jobs[c], parent = draft.jobs[p];
    edge = null;
    if (!child || !parent) return;
    child.parents = child.parents.filter((k) => k !== parent.key);
    if (c === selected) form.refresh();
    changed();
  }

  function select(i) {
    const was = selected;
    selected = i;
    if (was >= 0) graph.redraw(was);
    if (i < 0 || !draft.jobs[i]) { selected = -1; form.close(); return; }
    graph.redraw(i);
    form.open(draft.jobs[i]);
    form.showProblems(reply ? reply.problems.filter((p) => p.jobs.includes(i)) : []);
  }

  // -- the master's check --------------------------------------------------------------------
  async function check() {
    const asked = version;
    let r;
    try {
      r = await T.api("POST", "/dags/new/check", wire());
    } catch (err) {
      if (asked === version) {
        root.dataset.state = "error";
        say("The check failed: " + err.message, "error");
      }
      return null;
    }
    if (asked !== version) return null;
    show(r);
    return r;
  }
  const checkSoon = T.throttle(check, 150);

  function show(r) {
    reply = r;
    const index = new Map(draft.jobs.map((j, i) => [j.job_id, i]));  // the last of an id, as the layout
    const cycle = r.cycle || [];
    marks = { jobs: new Set(r.problems.flatMap((p) => p.jobs)), cycle: new Set(cycle),
              cycleEdges: new Set(cycle.slice(1).map((id, k) => index.get(cycle[k]) + ">" + index.get(id))) };
    if (edge && !(draft.jobs[edge[0]] && draft.jobs[edge[1]])) edge = null;
    graph.setLayout(r.layout);
    root.querySelector(".builder-empty").hidden = draft.jobs.length > 0;
    showProblems(r.problems);
    if (selected >= 0) form.showProblems(r.problems.filter((p) => p.jobs.includes(selected)));
    document.getElementById("builder-yaml").textContent = r.yaml || "(the YAML is written once the jobs are valid)";
    exportButton.disabled = !r.yaml;
    submitButton.disabled = !r.dag || submitButton.hasAttribute("data-viewer");
    root.dataset.state = r.problems.length ? "problems" : "ready";
    say(r.problems.length ? r.problems.length + " problem" + (r.problems.length > 1 ? "s" : "") : "ready to submit",
        r.problems.length ? "problems" : "ok");
  }

  function showProblems(problems, refused) {
    const section = document.getElementById("builder-problems");
    section.querySelector(".problems").replaceChildren(...problems.map((p) => T.el("li", {
      class: "problem", tabindex: 0,
      dataset: { jobs: p.jobs.join(","), field: p.field || "", code: p.code, jobId: p.job_id === null ? "" : String(p.job_id) },
    }, p.message)));
    section.querySelector(".builder-ok").hidden = problems.length > 0 || refused;
  }

  function say(text, kind) {
    status.textContent = text;
    status.dataset.kind = kind || "";
  }

  // -- drawing edges: drag from a node's handle onto another node -----------------------------
  graph.canvas.addEventListener("pointerdown", (e) => {
    const port = e.target.closest(".port");
    if (!port || e.button !== 0) return;
    e.preventDefault();
    const from = Number(port.closest(".node").dataset.index);
    const [x1, y1] = graph.out(from);
    const move = (ev) => {
      const [x2, y2] = graph.point(ev);
      dragLine.setAttribute("d", "M" + x1 + " " + y1 + "L" + x2 + " " + y2);
    };
    const end = (ev) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", end);
      window.removeEventListener("pointercancel", end);
      dragLine.setAttribute("d", "");
      const target = ev.type === "pointerup" ? document.elementFromPoint(ev.clientX, ev.clientY) : null;
      const node = target && target.closest("#graph-canvas .node");
      if (node) connect(from, Number(node.dataset.index));
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", end);
    window.addEventListener("pointercancel", end);
  });

  graph.canvas.addEventListener("click", (e) => {
    if (e.target.closest(".port")) return;
    const node = e.target.closest(".node");
    const hit = e.target.closest(".edge-hit");
    if (node) {
      edge = null;
      select(Number(node.dataset.index));
    } else if (hit) {
      edge = [Number(hit.dataset.from), Number(hit.dataset.to)];
      const [p, c] = edge;
      say("Selected: " + draft.jobs[c].job_id + " depends on " + draft.jobs[p].job_id + " — Delete removes it", "edge");
    } else {
      edge = null;
    }
    graph.render();
  });

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select, dialog")) return;
    if ((e.key === "Delete" || e.key === "Backspace") && edge) { e.preventDefault(); removeEdge(); }
    else if (e.key === "Escape") { edge = null; select(-1); graph.render(); }
  });

  // -- toolbar: add, import, export, submit ---------------------------------------------------
  document.getElementById("add-job").addEventListener("click", addJob);
  nameInput.addEventListener("input", () => { draft.name = nameInput.value; changed(); });
  document.getElementById("builder-problems").addEventListener("click", (e) => {
    const li = e.target.closest("li.problem");
    if (li && li.dataset.jobs) {
      const i = Number(li.dataset.jobs.split(",")[0]);
      graph.reveal(i);
      select(i);
    }
  });

  async function upload(file) {
    const r = await T.fetch("/api/v1/files/" + encodeURIComponent(file.name), {
      method: "PUT", body: file, credentials: "same-origin",
      headers: { "X-CSRF-Token": T.writeKey(), "Content-Type": "application/octet-stream" },
    });
    const body = await r.json().catch(() => null);
    if (r.status === 403 && body && body.error && body.error.code === "csrf_failed") T.needsKey();
    if (!r.ok) throw new Error(body && body.error ? body.error.message : r.status + " " + r.statusText);
    const list = document.getElementById("builder-files");
    if (![...list.options].some((o) => o.value === body.name)) {
      list.prepend(T.el("option", { value: body.name, text: T.size(body.size) + " · just now" }));
    }
    T.toast("Uploaded " + body.name);
    return body.name;
  }

  exportButton.addEventListener("click", () => {
    if (!reply || !reply.yaml) return;
    const url = URL.createObjectURL(new Blob([reply.yaml], { type: "application/yaml" }));
    const a = T.el("a", { href: url, download: (draft.name || "pipeline") + ".yaml", hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  const dialog = document.getElementById("import-dialog");
  const importText = document.getElementById("import-text");
  const importError = document.getElementById("import-error");
  document.getElementById("import-yaml").addEventListener("click", () => {
    importError.hidden = true;
    dialog.showModal();
  });
  dialog.querySelector("[data-action=close-import]").addEventListener("click", () => dialog.close());
  document.getElementById("import-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) importText.value = await file.text();
  });
  document.getElementById("import-go").addEventListener("click", async () => {
    try {
      const r = await T.api("POST", "/dags/new/check", { name: draft.name, yaml: importText.value });
      dialog.close();
      adopt(r.name, r.jobs);
      say("Imported " + r.jobs.length + " job" + (r.jobs.length === 1 ? "" : "s"), "ok");
    } catch (err) {
      importError.textContent = err.message;
      importError.hidden = false;
    }
  });

  submitButton.addEventListener("click", async () => {
    submitButton.disabled = true;
    say("Submitting…", "");
    const r = await check();
    if (!r || !r.dag) { say("Not submitted: the draft changed or has problems", "problems"); return; }
    let dag;
    try {
      dag = await T.api("POST", "/api/v1/dags", r.dag);
    } catch (err) {
      // The master is the authority: its refusal names the job, shown like any problem.
      const id = err.details && err.details.job_id;
      const jobs = draft.jobs.map((j, i) => (j.job_id === id ? i : -1)).filter((i) => i >= 0);
      showProblems([{ jobs: jobs, job_id: id || null, field: err.details ? err.details.field : null,
                      code: "refused", message: "The master refused it: " + err.message }], true);
      say("Refused", "problems");
      submitButton.disabled = submitButton.hasAttribute("data-viewer");
      return;
    }
    sessionStorage.removeItem(STORED);
    location.href = "/dags/DAG-" + encodeURIComponent(dag.name) + "?run=" + dag.run;
  });

  // The pickers follow the cluster: a worker joining with a new capability, files uploaded
  // meanwhile (re-read from the page's twin on worker events and on every reconnect).
  const refreshPickers = T.throttle(async () => {
    let fresh;
    try { fresh = await T.getJSON("/dags/new.json"); } catch (err) { return; }
    document.getElementById("builder-files").replaceChildren(...fresh.files.map((f) =>
      T.el("option", { value: f.name, text: T.size(f.size) + " · " + T.ago(f.created_at) })));
    document.getElementById("builder-caps").replaceChildren(...fresh.capabilities.map((cap) =>
      T.el("option", { value: cap })));
  }, 2000);
  T.live({ types: ["worker_updated"], onEvent: refreshPickers,
           onResync: (first) => { if (!first) refreshPickers(); } });

  nameInput.value = draft.name;
  root.querySelector(".builder-empty").hidden = draft.jobs.length > 0;
  changed();
})();
