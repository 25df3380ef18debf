/* JSON for people, and the action inspector of the run page.
 *
 * Titan.json: pretty-printing, a tiny syntax highlighter (keys, strings, numbers, booleans,
 * null as <span>s made with textContent: never innerHTML) and copying to the clipboard.
 * Titan.inspector: the side panel that shows one action in full — it fetches
 * GET /api/v1/runs/<id>/actions/<seq>, since list pages carry only previews.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const el = T.el;
  const HIGHLIGHT_MAX = 300000;  // characters: past this a value is shown plain (DOM cost)
  // Characters shown at first: a multi-megabyte output laid out whole froze the page for
  // seconds (and its pretty text is larger still). The rest is a click away, and Copy and
  // Download always take the whole value.
  const SHOW_MAX = 200000;
  const TOKEN = /("(?:[^"\\\n]|\\.)*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

  /* The text to show for a value: indented JSON when it is all there, else the stored
   * preview (a string) as it is. */
  function pretty(value, complete) {
    if (complete === false) return typeof value === "string" ? value : JSON.stringify(value);
    if (value === undefined) return "";
    return JSON.stringify(value, null, 2);
  }

  function highlight(text) {
    const frag = document.createDocumentFragment();
    if (text.length > HIGHLIGHT_MAX) {
      frag.append(text);
      return frag;
    }
    let last = 0, m;
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(text)) !== null) {
      if (m.index > last) frag.append(text.slice(last, m.index));
      let cls = "j-num";
      if (m[1] !== undefined) cls = m[2] !== undefined ? "j-key" : "j-str";
      else if (m[3] !== undefined) cls = m[3] === "null" ? "j-null" : "j-bool";
      frag.append(el("span", { class: cls, text: m[1] !== undefined ? m[1] : m[0] }));
      if (m[2] !== undefined) frag.append(m[2]);
      last = TOKEN.lastIndex;
    }
    if (last < text.length) frag.append(text.slice(last));
    return frag;
  }

  /* Copy text; where the clipboard is refused (an insecure origin, a denied permission) the
   * text is selected on the page instead, for Ctrl+C. */
  async function copy(text, node) {
    try {
      await navigator.clipboard.writeText(text);
      T.toast("Copied " + text.length.toLocaleString() + " characters");
      return true;
    } catch (err) {
      if (node) {
        const range = document.createRange();
        range.selectNodeContents(node);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        try {
          if (document.execCommand("copy")) { T.toast("Copied"); return true; }
        } catch (e) { /* selected: the user copies by hand */ }
      }
      T.toast("The browser refused the clipboard: the text is selected, press Ctrl+C", "error");
      return false;
    }
  }

  /* A titled block with a copy button and the highlighted value. `full` (optional) returns
   * a promise of the complete text, for a preview that was cut short. */
  function block(title, value, complete, full, extraClass) {
    const text = pretty(value, complete);
    const pre = el("pre", { class: "json" + (extraClass ? " " + extraClass : "") });
    const cut = () => complete === false ? el("span", { class: "j-cut", text: "\n… cut short here" }) : null;
    const whole = async () => {
      if (complete === false && full) return full();
      return text;
    };
    let more = null;
    if (text.length > SHOW_MAX) {
      pre.append(highlight(text.slice(0, SHOW_MAX)));
      more = el("button", { type: "button", class: "show-all",
                            text: "Show all " + text.length.toLocaleString() + " characters (" +
                                  (text.length - SHOW_MAX).toLocaleString() + " more)" });
      more.addEventListener("click", (e) => {
        e.stopPropagation();
        pre.replaceChildren(highlight(text));
        const mark = cut();
        if (mark) pre.append(mark);
        more.remove();
      });
      pre.append(el("span", { class: "j-cut", text: "\n… " + (text.length - SHOW_MAX).toLocaleString() + " more characters" }));
    } else {
      pre.append(highlight(text));
      const mark = cut();
      if (mark) pre.append(mark);
    }
    const btn = el("button", { type: "button", class: "copy", title: "Copy " + title.toLowerCase() + " as JSON", text: "Copy" });
    btn.addEventListener("click", async (e) => {
      e.stopPropagation();
      let out;
      try { out = await whole(); } catch (err) { T.toast("Could not read the full value: " + err.message, "error"); return; }
      copy(out, pre);
    });
    const save = el("button", { type: "button", class: "download", title: "Download " + title.toLowerCase() + " as a JSON file", text: "Download" });
    save.addEventListener("click", async (e) => {
      e.stopPropagation();
      let out;
      try { out = await whole(); } catch (err) { T.toast("Could not read the full value: " + err.message, "error"); return; }
      const url = URL.createObjectURL(new Blob([out], { type: "application/json" }));
      const a = el("a", { href: url, download: title.toLowerCase().replace(/[^a-z0-9]+/g, "-") + ".json" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    });
    return el("section", { class: "json-block" },
      el("div", { class: "json-head" }, el("span", { class: "json-title", text: title }), btn, save),
      pre, more);
  }

  T.json = { pretty, highlight, copy, block };

  // -- the inspector -----------------------------------------------------------------------
  const panel = document.getElementById("inspector");
  if (!panel) return;
  let ticket = 0, onClose = null, retry = null;
  document.addEventListener("titan:run-resync", () => { if (retry && !panel.hidden) retry(); });

  function fullUrl(runId, seq) {
    return "/api/v1/runs/" + encodeURIComponent(runId) + "/actions/" + encodeURIComponent(seq);
  }

  function fmtTags(tags) {
    if (tags === null || tags === undefined) return "—";
    if (Array.isArray(tags)) return tags.join(", ") || "—";
    return Object.entries(tags).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(", ");
  }

  function metadata(a) {
    const usage = Object.entries(a.usage || {}).map(([k, v]) => k.replace("_tokens", "") + " " + v).join(" · ");
    const rows = [
      ["UUID", a.id], ["Seq", a.seq], ["Actor", a.actor], ["Stage", a.stage || "—"],
      ["Channel", a.channel], ["Ordinal", a.ordinal], ["Model", a.model || "—"],
      ["Usage", usage || "—"],
      ["Cost", T.usd(a.cost_usd) + (a.cost_source ? " (" + a.cost_source + ")" : "")],
      ["Started", new Date(a.started_at * 1000).toISOString()],
      ["Duration", T.duration(a.duration_ns / 1e9) + " (" + a.duration_ns.toLocaleString() + " ns)"],
      ["Tags", fmtTags(a.tags)], ["Parent", a.parent_id || "—"],
      ["Inputs", T.size(a.inputs_size) + (a.inputs_hash ? " · " + a.inputs_hash.slice(0, 16) : "")],
      ["Outputs", T.size(a.outputs_size) + (a.outputs_hash ? " · " + a.outputs_hash.slice(0, 16) : "")],
      ["Recorded", a.recorded_at ? new Date(a.recorded_at * 1000).toISOString() : "—"],
    ];
    const dl = el("dl", { class: "inspector-meta" });
    for (const [k, v] of rows) {
      dl.append(el("dt", { text: k }), el("dd", { class: "meta-" + k.toLowerCase(), text: v === null || v === undefined ? "—" : String(v) }));
    }
    return dl;
  }

  /* Seed 004's "Compliance metadata": the run's (who started it, its retention class, its
   * code version; rendered into the page as JSON) and this action's PII flags — which
   * patterns redaction replaced in which field, and how often; never the values. */
  const runCompliance = (() => {
    const node = document.getElementById("run-compliance-data");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  })();

  function compliance(a) {
    const fields = Object.entries(a.pii_fields || {});
    const flags = fields.length
      ? fields.map(([field, counts]) => field + ": " + Object.entries(counts).map(([k, n]) => k + " ×" + n).join(", ")).join(" · ")
      : "none found";
    const rows = [
      ["PII redacted", flags], ["Started by", runCompliance.started_by],
      ["Retention", runCompliance.retention_class], ["Code version", runCompliance.code_version],
    ];
    if (runCompliance.archived_at) rows.push(["Archived", new Date(runCompliance.archived_at * 1000).toISOString()]);
    const dl = el("dl", { class: "inspector-meta inspector-compliance" });
    for (const [k, v] of rows) {
      dl.append(el("dt", { text: k }), el("dd", { class: "compliance-" + k.toLowerCase().replace(/ /g, "-"), text: v === null || v === undefined ? "—" : String(v) }));
    }
    const parts = [el("h3", { text: "Compliance" }), dl];
    if (fields.length) {
      parts.push(el("p", { class: "muted pii-note", text: "Values matching these patterns were replaced by [REDACTED:<pattern>] before storage: the originals were never kept, so a replay cannot serve this action's redacted outputs." }));
    }
    return parts;
  }

  function head(seq, name, outcome) {
    const close = el("button", { type: "button", class: "close", title: "Close (Esc)", "aria-label": "Close", text: "×" });
    close.addEventListener("click", () => T.inspector.close());
    return el("header", { class: "inspector-head" },
      el("h2", {}, el("span", { class: "muted", text: "#" + seq + " " }), name || ""),
      outcome ? el("span", { class: "badge outcome-" + outcome, text: outcome }) : null, close);
  }

  function render(a) {
    const parts = [head(a.seq, a.name, a.outcome)];
    if (a.error) {
      parts.push(el("div", { class: "error-box inspector-error", role: "alert" },
        el("b", { text: a.error.type || "Error" }), ": ", el("span", { class: "mono", text: a.error.message || "" })));
    }
    parts.push(block("Inputs", a.inputs, a.inputs_complete, null, "inputs"));
    parts.push(block("Outputs", a.outputs, a.outputs_complete, null, "outputs"));
    if (!a.inputs_complete || !a.outputs_complete) {
      parts.push(el("p", { class: "muted", text: "A value cut short is a preview: its full text was not kept." }));
    }
    parts.push(el("h3", { text: "Metadata" }), metadata(a));
    parts.push(...compliance(a));
    panel.replaceChildren(...parts);
  }

  T.inspector = {
    /* Show action `seq` of run `runId`; `summary` (its list row) fills the header at once. */
    async open(runId, seq, summary, closed) {
      const mine = ++ticket;
      onClose = closed || null;
      panel.hidden = false;
      panel.dataset.seq = seq;
      panel.replaceChildren(head(seq, summary ? summary.name : "", summary ? summary.outcome : ""),
                            el("p", { class: "muted loading", text: "Loading…" }));
      retry = null;
      try {
        const a = await T.getJSON(fullUrl(runId, seq));
        if (mine === ticket) render(a);
      } catch (err) {
        if (mine !== ticket) return;
        // Not "Loading…" for good above the browser's "Failed to fetch": why, and a Retry
        // (taken by itself when the page's feed reconnects: the master is back).
        retry = () => T.inspector.open(runId, seq, summary, closed);
        const failed = T.failure("Could not load action #" + seq, err, retry);
        const loading = panel.querySelector(".loading");
        if (loading) loading.replaceWith(failed); else panel.append(failed);
      }
    },
    close() {
      ticket++;
      retry = null;
      panel.hidden = true;
      delete panel.dataset.seq;
      panel.replaceChildren();
      if (onClose) onClose();
      onClose = null;
    },
    isOpen: () => !panel.hidden,
    full: (runId, seq) => T.getJSON(fullUrl(runId, seq)),
  };
})();
