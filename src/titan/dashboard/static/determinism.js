/* The Determinism tab of a run's page: the master's analysis of what in the run would come
 * out differently on a second run (GET /api/v1/runs/<id>/determinism) — a 0-100 score with
 * its band, the findings (from the code, the recorded actions and the run's replays) and
 * how to fix each kind, with a link to the kind's section of the docs (/docs/determinism).
 *
 * Fetched the first time the tab opens, again on "Analyze again", and when a replay started
 * from this page ends (replays add findings). Everything from the server goes in with
 * textContent (Titan.el).
 */
(function () {
  "use strict";
  const T = window.Titan, el = T.el;
  const panel = document.getElementById("panel-determinism");
  if (!panel) return;
  const runId = document.body.dataset.runId;
  const body = document.getElementById("determinism-body");
  const errorBox = document.getElementById("determinism-error");
  const again = document.getElementById("determinism-refresh");
  const SEVERITIES = ["critical", "high", "medium", "low"];
  const BANDS = [[90, "Highly deterministic"], [70, "Moderately deterministic"],
                 [50, "Low determinism"], [0, "Highly non-deterministic"]];
  const cap = (w) => (w ? w.charAt(0).toUpperCase() + w.slice(1) : "");
  const plural = T.plural;
  let loaded = false, ticket = 0;

  function score(d) {
    const band = d.band || {};
    const value = Math.max(0, Math.min(100, Number(d.score) || 0));
    const fill = el("div", { class: "det-fill" });
    fill.style.width = value + "%";  // CSSOM, not a style attribute: the CSP allows it
    const meter = el("div", { class: "det-meter", role: "meter", "aria-label": "Determinism score",
                              "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": value,
                              "aria-valuetext": value + " of 100: " + (band.label || "") }, fill);
    for (const [at] of BANDS.slice(0, 3)) {
      const tick = el("span", { class: "det-tick", title: at, "aria-hidden": "true" });
      tick.style.left = at + "%";
      meter.append(tick);
    }
    return el("div", { id: "determinism-score", class: "det-score", dataset: { score: d.score, band: band.color || "" } },
      el("div", { class: "det-score-head" },
        el("span", { class: "det-number", text: d.score === null ? "—" : String(d.score) }), el("span", { class: "muted", text: "/ 100" }),
        el("span", { class: "det-band", text: band.label || "" })),
      meter,
      el("div", { class: "det-legend muted" }, ...BANDS.map(([min, label]) =>
        el("span", { class: "det-legend-item" + (band.min === min ? " current" : ""), text: (min ? min + "+ " : "0–49 ") + label }))));
  }

  function counts(d) {
    const c = d.counts || {};
    return el("ul", { id: "severity-counts", class: "sev-counts" }, ...SEVERITIES.map((sev) =>
      el("li", { class: "sev-count", dataset: { severity: sev, count: c[sev] || 0 } },
        el("b", { text: String(c[sev] || 0) }), " " + sev)));
  }

  function analyzed(d) {
    const a = d.analyzed || {};
    const files = a.files || [];
    return el("p", { id: "determinism-analyzed", class: "muted det-analyzed", title: files.join("\n") },
      "Analyzed " + plural(files.length, "file") + ", " + plural(a.actions, "recorded action") +
      " and " + plural(a.replays, "replay") + ".");
  }

  function beforeAfter(before, after) {
    if (!before && !after) return null;
    const fig = (label, text, cls) => text ? el("figure", { class: "snippet " + cls },
      el("figcaption", { text: label }), el("pre", { class: "code " + cls, text: text })) : null;
    return el("div", { class: "before-after" }, fig("Before", before, "before"), fig("After", after, "after"));
  }

  function actionRef(f) {
    if (!f.action && (f.seq === null || f.seq === undefined)) return null;
    const label = (f.action || "action") + (f.seq !== null && f.seq !== undefined ? " #" + f.seq : "");
    if (f.seq === null || f.seq === undefined) return el("span", { class: "finding-action mono", text: label });
    const b = el("button", { type: "button", class: "link finding-action mono", title: "Open the action in the inspector", text: label });
    b.addEventListener("click", () => { T.runTabs.select("telemetry"); T.inspector.open(runId, f.seq, null); });
    return b;
  }

  // The docs section of a kind of finding (the server names it: /docs/determinism#wall-clock).
  // Only a path on this site is made a link: anything else from the server stays text.
  function docsLink(href, title) {
    if (typeof href !== "string" || !href.startsWith("/docs/")) return null;
    return el("a", { class: "docs-link", href: href, title: "How to fix " + (title || "this") + ", in the docs", text: "Docs →" });
  }

  function finding(f) {
    const where = f.file ? f.file + (f.line ? ":" + f.line : "") : null;
    const meta = [];
    if (where) meta.push(el("span", {}, "in ", el("code", { class: "finding-where", text: where })));
    const act = actionRef(f);
    if (act) meta.push(el("span", {}, "action ", act));
    return el("li", { class: "finding", dataset: { kind: f.kind, severity: f.severity, source: f.source || "" } },
      el("div", { class: "finding-head" },
        el("span", { class: "badge sev sev-" + f.severity, text: cap(f.severity) }),
        el("b", { class: "finding-title", text: f.title || f.kind }),
        el("span", { class: "tag finding-kind", text: f.kind }),
        f.source ? el("span", { class: "finding-source muted", text: f.source }) : null),
      meta.length ? el("div", { class: "finding-meta" }, ...meta) : null,
      f.code ? el("pre", { class: "code finding-code", text: f.code }) : null,
      f.description ? el("p", { class: "finding-desc", text: f.description }) : null,
      f.recommendation ? el("p", { class: "finding-rec" }, el("b", { text: "Recommendation: " }), f.recommendation, " ", docsLink(f.docs, f.title)) : null,
      beforeAfter(f.before, f.after));
  }

  function render(d) {
    const findings = d.findings || [], recs = d.recommendations || [];
    // No code recorded (a run imported over OTLP, or recorded over the API): scored "Not
    // applicable", so "no pattern found in the code ... Nothing to change" contradicted it.
    const noCode = d.score === null;
    const nothingFound = noCode
      ? "No code was recorded for this run, so none was analyzed; its recorded actions show no non-deterministic pattern."
      : "No non-deterministic pattern found in the code or the recorded actions.";
    body.replaceChildren(
      el("div", { class: "det-summary" }, score(d), el("div", {}, counts(d), analyzed(d))),
      el("h3", { text: "Issues found (" + findings.length + ")" }),
      findings.length ? el("ol", { id: "findings", class: "findings" }, ...findings.map(finding))
        : el("p", { id: "findings", class: "muted", text: nothingFound }),
      el("h3", { text: "Recommendations" }),
      recs.length ? el("ul", { id: "recommendations", class: "recommendations" }, ...recs.map((r) =>
        el("li", { class: "recommendation", dataset: { kind: r.kind } },
          el("b", { class: "rec-title", text: r.title || r.kind }),
          r.advice ? el("p", { class: "rec-advice" }, r.advice, " ", docsLink(r.docs, r.title)) : null,
          beforeAfter(r.before, r.after))))
        : el("p", { id: "recommendations", class: "muted",
                    text: noCode ? "None: record the run's code (titan.trace.run in a script Titan runs) to have it analyzed." : "Nothing to change." }));
  }

  async function load() {
    const mine = ++ticket;
    loaded = true;
    again.disabled = true;
    errorBox.hidden = true;
    try {
      const d = await T.getJSON("/api/v1/runs/" + encodeURIComponent(runId) + "/determinism");
      if (mine === ticket) render(d);
    } catch (err) {
      if (mine !== ticket) return;
      errorBox.textContent = "Could not analyze this run: " + err.message;
      errorBox.hidden = false;
      body.replaceChildren();
    } finally {
      if (mine === ticket) again.disabled = false;
    }
  }

  again.addEventListener("click", load);
  document.addEventListener("titan:tab", (e) => { if (e.detail.name === "determinism" && !loaded) load(); });
  document.addEventListener("titan:replay-ended", () => {
    if (!loaded) return;
    if (panel.hidden) loaded = false; else load();  // stale: read again when next opened
  });
})();
