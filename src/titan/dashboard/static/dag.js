/* The DAG visualizer: a grid laid out on the server, drawn in the browser one window at a time.
 *
 * The layout arrives as flat arrays (column x, row y, state, ids, edges). Only nodes inside
 * the scroll viewport exist in the DOM, re-rendered on scroll in an animation frame, so a
 * 10,000-node fan-out or chain costs what a screenful costs. Edges are two SVG paths over
 * the visible window: whole edges when the far end is near, short dashed stubs when it is
 * far (a node with 10,000 children would otherwise draw 10,000 lines through the view).
 */
(function () {
  "use strict";
  const T = window.Titan;
  const CW = 200, CH = 46, NW = 168, NH = 34, PAD = 16, STUB = 36, STUBS_PER_NODE = 2;

  const data = JSON.parse(document.getElementById("dag-data").textContent);
  const L = data.layout;
  const n = L.id.length;
  const dagId = data.dag.id;
  const graph = document.getElementById("graph");
  const canvas = document.getElementById("graph-canvas");
  const svg = document.getElementById("graph-edges");
  const [edgePath, stubPath] = svg.querySelectorAll("path");
  const state = L.state.slice();

  // -- indexes: by numeric id, by column (col[c][row] = node), parents/children as CSR ----
  const byId = new Map();
  for (let i = 0; i < n; i++) byId.set(L.id[i], i);
  const cols = Array.from({ length: L.cols }, () => []);
  for (let i = 0; i < n; i++) cols[L.x[i]][L.y[i]] = i;
  function csr(from, to) {
    const off = new Int32Array(n + 1), idx = new Int32Array(L.edges.length / 2);
    for (let k = from; k < L.edges.length; k += 2) off[L.edges[k] + 1]++;
    for (let i = 0; i < n; i++) off[i + 1] += off[i];
    const fill = off.slice(0, n);
    for (let k = 0; k < L.edges.length; k += 2) idx[fill[L.edges[k + from]]++] = L.edges[k + to];
    return [off, idx];
  }
  const [pOff, pIdx] = csr(1, 0);  // parents of each child
  const [cOff, cIdx] = csr(0, 1);  // children of each parent

  canvas.style.width = Math.max(0, L.cols * CW - (CW - NW)) + 2 * PAD + "px";
  canvas.style.height = Math.max(0, L.rows * CH - (CH - NH)) + 2 * PAD + "px";

  // -- the visible window ------------------------------------------------------------------
  const rendered = new Map();  // node index -> element
  const pool = [];
  const seen = new Uint32Array(n);  // seen[i] === epoch: node i is visible this frame
  let epoch = 0, selected = -1, frame = 0;

  function nodeEl(i) {
    const d = pool.pop() || T.el("div", { class: "node" }, T.el("span"));
    d.dataset.jobId = L.job[i];
    d.dataset.id = L.id[i];
    d.dataset.state = state[i];
    d.title = L.job[i] + " — " + state[i];
    d.style.left = PAD + L.x[i] * CW + "px";
    d.style.top = PAD + L.y[i] * CH + "px";
    d.firstChild.textContent = L.job[i];
    d.classList.toggle("selected", i === selected);
    return d;
  }

  function render() {
    frame = 0;
    epoch++;
    const vw = graph.clientWidth, vh = graph.clientHeight;
    const sl = graph.scrollLeft, st = graph.scrollTop;
    const c0 = Math.max(0, Math.ceil((sl - PAD - NW) / CW)), c1 = Math.min(L.cols - 1, Math.floor((sl + vw - PAD) / CW));
    const r0 = Math.max(0, Math.ceil((st - PAD - NH) / CH)), r1 = Math.floor((st + vh - PAD) / CH);
    const visible = [];
    for (let c = c0; c <= c1; c++) {
      const col = cols[c];
      for (let r = r0, end = Math.min(r1, col.length - 1); r <= end; r++) {
        seen[col[r]] = epoch;
        visible.push(col[r]);
      }
    }
    for (const [i, d] of rendered) {
      if (seen[i] !== epoch) { d.remove(); pool.push(d); rendered.delete(i); }
    }
    const frag = document.createDocumentFragment();
    for (const i of visible) {
      if (!rendered.has(i)) { const d = nodeEl(i); rendered.set(i, d); frag.append(d); }
    }
    canvas.append(frag);
    drawEdges(visible, c0, c1, r0, r1, sl, st, vw, vh);
  }

  function drawEdges(visible, c0, c1, r0, r1, sl, st, vw, vh) {
    const span = r1 - r0 + 1, ec0 = c0 - 2, ec1 = c1 + 2, er0 = r0 - span, er1 = r1 + span;
    const near = (j) => L.x[j] >= ec0 && L.x[j] <= ec1 && L.y[j] >= er0 && L.y[j] <= er1;
    const whole = [], stubs = [];
    for (const i of visible) {
      let far = 0;
      for (let k = pOff[i]; k < pOff[i + 1]; k++) {  // edges in from parents: drawn from here
        const p = pIdx[k];
        if (near(p)) whole.push(curve(p, i));
        else if (far++ < STUBS_PER_NODE) stubs.push(stub(i, p, true));
      }
      far = 0;
      for (let k = cOff[i]; k < cOff[i + 1]; k++) {  // edges out to children not drawn above
        const c = cIdx[k];
        if (seen[c] === epoch) continue;
        if (near(c)) whole.push(curve(i, c));
        else if (far++ < STUBS_PER_NODE) stubs.push(stub(i, c, false));
      }
    }
    svg.style.left = sl + "px";
    svg.style.top = st + "px";
    svg.setAttribute("width", vw);
    svg.setAttribute("height", vh);
    svg.setAttribute("viewBox", sl + " " + st + " " + vw + " " + vh);
    edgePath.setAttribute("d", whole.join(""));
    stubPath.setAttribute("d", stubs.join(""));
  }

  function out(i) { return [PAD + L.x[i] * CW + NW, PAD + L.y[i] * CH + NH / 2]; }
  function into(i) { return [PAD + L.x[i] * CW, PAD + L.y[i] * CH + NH / 2]; }
  function curve(a, b) {
    const [x1, y1] = out(a), [x2, y2] = into(b), mx = (x1 + x2) / 2;
    return "M" + x1 + " " + y1 + "C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2;
  }
  function stub(i, other, towardParent) {
    const [x1, y1] = towardParent ? into(i) : out(i);
    const [x2, y2] = towardParent ? out(other) : into(other);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    return "M" + x1 + " " + y1 + "L" + (x1 + (x2 - x1) * STUB / len) + " " + (y1 + (y2 - y1) * STUB / len);
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }
  graph.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);

  function reveal(i) {
    const x = PAD + L.x[i] * CW, y = PAD + L.y[i] * CH;
    if (x < graph.scrollLeft || x + NW > graph.scrollLeft + graph.clientWidth) graph.scrollLeft = x - graph.clientWidth / 3;
    if (y < graph.scrollTop || y + NH > graph.scrollTop + graph.clientHeight) graph.scrollTop = y - graph.clientHeight / 3;
  }

  // -- header: status badge, counts, run picker -----------------------------------------------
  const counts = {};
  for (const s of state) counts[s] = (counts[s] || 0) + 1;
  function showCounts() {
    for (const span of document.querySelectorAll("#dag-counts .count")) {
      const k = counts[span.dataset.state] || 0;
      span.hidden = !k;
      span.querySelector("b").textContent = k;
    }
  }
  function setStatus(status) {
    const badge = document.getElementById("dag-status");
    badge.dataset.status = status;
    badge.textContent = status;
    const cancel = document.querySelector("button[data-action=cancel-dag]");
    if (cancel) cancel.hidden = !(status === "WAITING" || status === "RUNNING");
    const opt = document.querySelector("#run-select option:checked");
    if (opt) opt.textContent = "#" + data.dag.run + " · " + status;
  }
  const runSelect = document.getElementById("run-select");
  runSelect.addEventListener("change", () => {
    location.href = runSelect.dataset.base + "?run=" + encodeURIComponent(runSelect.value);
  });

  // -- job panel, approval banner, files -------------------------------------------------------
  const live = T.live({
    types: ["job_updated", "dag_updated", "dag_created", "log_lines"], dag: dagId,
    onEvent: onEvent, onResync: resync,
  });
  const panel = new T.JobView(document.getElementById("job-panel"), live);
  const banner = new T.ApprovalBanner(document.getElementById("approval-banner"));

  function select(i) {
    if (selected >= 0 && rendered.has(selected)) rendered.get(selected).classList.remove("selected");
    selected = i;
    if (i >= 0 && rendered.has(i)) rendered.get(i).classList.add("selected");
  }
  function openJob(i) {
    select(i);
    history.replaceState(null, "", "#job=" + L.id[i]);
    panel.open(L.id[i]);
  }
  canvas.addEventListener("click", (e) => {
    const d = e.target.closest(".node");
    if (d) openJob(byId.get(Number(d.dataset.id)));
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
      try { gate = await T.getJSON("/api/v1/jobs/" + id); } catch (err) { return; }
    }
    if (state[byId.get(id)] === "WAITING_APPROVAL") banner.show(gate, waiting.length - 1);
  }

  function showFiles(files) {
    const section = document.getElementById("files");
    const tbody = section.querySelector("tbody");
    tbody.replaceChildren();
    for (const f of files) {
      tbody.append(T.el("tr", { class: "file-row", dataset: { fileId: f.id } },
        T.el("td", {}, T.el("a", { class: "file", href: "/api/v1/blobs/" + f.sha256, download: f.name, text: f.name }),
             f.key ? " " : null, f.key ? T.el("span", { class: "tag", title: "published under this store key", text: f.key }) : null),
        T.el("td", { class: "num", text: T.size(f.size) }),
        T.el("td", {}, T.timeEl(f.created_at)),
        T.el("td", {}, f.job ? T.el("a", { href: "/jobs/" + f.job, text: f.job }) : T.el("span", { class: "muted", text: "—" }))));
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
    const d = rendered.get(i);
    if (d) { d.dataset.state = s; d.title = L.job[i] + " — " + s; }
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
    } else if (msg.type === "dag_created" && ev.name === data.dag.name) {
      if (!runSelect.querySelector('option[value="' + ev.run + '"]')) {
        runSelect.prepend(T.el("option", { value: ev.run, text: "#" + ev.run + " · new" }));
      }
    }
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

  render();
  const m = /^#job=(\d+)$/.exec(location.hash);
  if (m && byId.has(Number(m[1]))) {
    const i = byId.get(Number(m[1]));
    reveal(i);
    render();
    openJob(i);
  }
})();
