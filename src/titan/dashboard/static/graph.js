/* A DAG's graph, laid out on the server (dashboard/layout.py) and drawn one window at a time:
 * the visualizer (dag.js) and the DAG builder (builder.js) both draw with it.
 *
 * The layout arrives as flat arrays (column x, row y, edges as parent/child index pairs).
 * Only nodes inside the scroll viewport exist in the DOM, re-rendered on scroll in an
 * animation frame, so a 10,000-node fan-out or chain costs what a screenful costs. Edges are
 * SVG paths over the visible window: whole edges when the far end is near, short dashed stubs
 * when it is far (a node with 10,000 children would otherwise draw 10,000 lines through the
 * view).
 *
 *   const g = new Titan.Graph(document.getElementById("graph"), {
 *     node(el, i) {...},        // fill node i's element (pooled: set everything it shows)
 *     edgeClass(parent, child), // optional: a class for a whole edge, drawn in a path of its own
 *     hitEdges: true,           // optional: a wide transparent path per whole edge to click
 *   });
 *   g.setLayout(layout);
 */
(function () {
  "use strict";
  const T = window.Titan;
  const CW = 200, CH = 46, NW = 168, NH = 34, PAD = 16, STUB = 36, STUBS_PER_NODE = 2;
  const SVG = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  class Graph {
    constructor(graph, opts) {
      this.graph = graph;
      this.canvas = graph.querySelector("#graph-canvas");
      this.svg = this.canvas.querySelector("svg");
      [this.edgePath, this.stubPath] = this.svg.querySelectorAll("path");
      this.opts = opts;
      this.classPaths = new Map();  // edge class -> its <path>
      this.hits = opts.hitEdges ? this.svg.appendChild(svgEl("g", { class: "edge-hits" })) : null;
      this.rendered = new Map();    // node index -> element
      this.pool = [];
      this.epoch = 0;
      this.frame = 0;
      this.setLayout({ cols: 0, rows: 0, x: [], y: [], edges: [] });
      const schedule = () => this.schedule();
      graph.addEventListener("scroll", schedule, { passive: true });
      window.addEventListener("resize", schedule);
    }

    /* A new layout: indexed by column, parents and children as CSR arrays, drawn at once. */
    setLayout(L) {
      const n = L.x.length;
      this.L = L;
      this.n = n;
      this.cols = Array.from({ length: L.cols }, () => []);
      for (let i = 0; i < n; i++) this.cols[L.x[i]][L.y[i]] = i;
      [this.pOff, this.pIdx] = csr(L, n, 1, 0);  // parents of each child
      [this.cOff, this.cIdx] = csr(L, n, 0, 1);  // children of each parent
      this.seen = new Uint32Array(n);  // seen[i] === epoch: node i is visible this frame
      for (const d of this.rendered.values()) { d.remove(); this.pool.push(d); }
      this.rendered.clear();
      this.canvas.style.width = Math.max(0, L.cols * CW - (CW - NW)) + 2 * PAD + "px";
      this.canvas.style.height = Math.max(0, L.rows * CH - (CH - NH)) + 2 * PAD + "px";
      this.render();
    }

    schedule() {
      if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
    }

    element(i) { return this.rendered.get(i); }

    /* Fill node i's element again (its state, its selection) if it is in view. */
    redraw(i) {
      const d = this.rendered.get(i);
      if (d) this.fill(d, i);
    }

    fill(d, i) {
      d.dataset.index = i;
      d.style.left = PAD + this.L.x[i] * CW + "px";
      d.style.top = PAD + this.L.y[i] * CH + "px";
      this.opts.node(d, i);
    }

    render() {
      this.frame = 0;
      const epoch = ++this.epoch, L = this.L, graph = this.graph, seen = this.seen;
      const vw = graph.clientWidth, vh = graph.clientHeight;
      const sl = graph.scrollLeft, st = graph.scrollTop;
      const c0 = Math.max(0, Math.ceil((sl - PAD - NW) / CW)), c1 = Math.min(L.cols - 1, Math.floor((sl + vw - PAD) / CW));
      const r0 = Math.max(0, Math.ceil((st - PAD - NH) / CH)), r1 = Math.floor((st + vh - PAD) / CH);
      const visible = [];
      for (let c = c0; c <= c1; c++) {
        const col = this.cols[c];
        for (let r = r0, end = Math.min(r1, col.length - 1); r <= end; r++) {
          seen[col[r]] = epoch;
          visible.push(col[r]);
        }
      }
      for (const [i, d] of this.rendered) {
        if (seen[i] !== epoch) { d.remove(); this.pool.push(d); this.rendered.delete(i); }
      }
      const frag = document.createDocumentFragment();
      for (const i of visible) {
        if (this.rendered.has(i)) continue;
        const d = this.pool.pop() || T.el("div", { class: "node" }, T.el("span"));
        this.fill(d, i);
        this.rendered.set(i, d);
        frag.append(d);
      }
      this.canvas.append(frag);
      this.drawEdges(visible, c0, c1, r0, r1, sl, st, vw, vh);
    }

    drawEdges(visible, c0, c1, r0, r1, sl, st, vw, vh) {
      const L = this.L, seen = this.seen, epoch = this.epoch, edgeClass = this.opts.edgeClass;
      const span = r1 - r0 + 1, ec0 = c0 - 2, ec1 = c1 + 2, er0 = r0 - span, er1 = r1 + span;
      const near = (j) => L.x[j] >= ec0 && L.x[j] <= ec1 && L.y[j] >= er0 && L.y[j] <= er1;
      const groups = new Map([["", []]]), stubs = [], hits = [];
      const whole = (a, b) => {
        const cls = edgeClass ? edgeClass(a, b) : "";
        if (!groups.has(cls)) groups.set(cls, []);
        const d = this.curve(a, b);
        groups.get(cls).push(d);
        if (this.hits) hits.push(svgEl("path", { class: "edge-hit", d: d, "data-from": a, "data-to": b }));
      };
      for (const i of visible) {
        let far = 0;
        for (let k = this.pOff[i]; k < this.pOff[i + 1]; k++) {  // edges in from parents: drawn from here
          const p = this.pIdx[k];
          if (near(p)) whole(p, i);
          else if (far++ < STUBS_PER_NODE) stubs.push(this.stub(i, p, true));
        }
        far = 0;
        for (let k = this.cOff[i]; k < this.cOff[i + 1]; k++) {  // edges out to children not drawn above
          const c = this.cIdx[k];
          if (seen[c] === epoch) continue;
          if (near(c)) whole(i, c);
          else if (far++ < STUBS_PER_NODE) stubs.push(this.stub(i, c, false));
        }
      }
      const svg = this.svg;
      svg.style.left = sl + "px";
      svg.style.top = st + "px";
      svg.setAttribute("width", vw);
      svg.setAttribute("height", vh);
      svg.setAttribute("viewBox", sl + " " + st + " " + vw + " " + vh);
      this.edgePath.setAttribute("d", groups.get("").join(""));
      this.stubPath.setAttribute("d", stubs.join(""));
      for (const [cls, path] of this.classPaths) if (!groups.has(cls)) path.setAttribute("d", "");
      for (const [cls, list] of groups) {
        if (!cls) continue;
        if (!this.classPaths.has(cls)) {
          this.classPaths.set(cls, svg.insertBefore(svgEl("path", { class: "edge " + cls }), this.hits));
        }
        this.classPaths.get(cls).setAttribute("d", list.join(""));
      }
      if (this.hits) this.hits.replaceChildren(...hits);
    }

    /* Where edges leave node i (its right side) and enter it (its left side). */
    out(i) { return [PAD + this.L.x[i] * CW + NW, PAD + this.L.y[i] * CH + NH / 2]; }
    into(i) { return [PAD + this.L.x[i] * CW, PAD + this.L.y[i] * CH + NH / 2]; }

    curve(a, b) {
      const [x1, y1] = this.out(a), [x2, y2] = this.into(b), mx = (x1 + x2) / 2;
      if (x2 > x1) return "M" + x1 + " " + y1 + "C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2;
      // An edge back (only a builder's draft with a cycle has one; the layout cuts the cycle
      // there): out to the right, back along the gap under the lower node's row, and in from
      // the left, rather than straight through the nodes between.
      const yb = Math.max(y1, y2) + NH / 2 + (CH - NH) / 2, r = (CW - NW) / 2;
      return "M" + x1 + " " + y1 + "C" + (x1 + r) + " " + y1 + " " + (x1 + r) + " " + yb + " " + x1 + " " + yb +
        "L" + x2 + " " + yb + "C" + (x2 - r) + " " + yb + " " + (x2 - r) + " " + y2 + " " + x2 + " " + y2;
    }

    stub(i, other, towardParent) {
      const [x1, y1] = towardParent ? this.into(i) : this.out(i);
      const [x2, y2] = towardParent ? this.out(other) : this.into(other);
      const len = Math.hypot(x2 - x1, y2 - y1) || 1;
      return "M" + x1 + " " + y1 + "L" + (x1 + (x2 - x1) * STUB / len) + " " + (y1 + (y2 - y1) * STUB / len);
    }

    /* A pointer event's position in the graph's own coordinates (those of out/into). */
    point(e) {
      const r = this.canvas.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    }

    /* Scroll node i into view (a third of the way in) when it is outside it. */
    reveal(i) {
      const graph = this.graph, x = PAD + this.L.x[i] * CW, y = PAD + this.L.y[i] * CH;
      if (x < graph.scrollLeft || x + NW > graph.scrollLeft + graph.clientWidth) graph.scrollLeft = x - graph.clientWidth / 3;
      if (y < graph.scrollTop || y + NH > graph.scrollTop + graph.clientHeight) graph.scrollTop = y - graph.clientHeight / 3;
    }
  }

  function csr(L, n, from, to) {
    const off = new Int32Array(n + 1), idx = new Int32Array(L.edges.length / 2);
    for (let k = from; k < L.edges.length; k += 2) off[L.edges[k] + 1]++;
    for (let i = 0; i < n; i++) off[i + 1] += off[i];
    const fill = off.slice(0, n);
    for (let k = 0; k < L.edges.length; k += 2) idx[fill[L.edges[k + from]]++] = L.edges[k + to];
    return [off, idx];
  }

  T.Graph = Graph;
})();
