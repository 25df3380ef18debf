/* One job's details and live logs (the DAG page's side panel and the job page), and the
 * approval banner. Both pages build them from here, so a job looks the same everywhere.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const el = T.el;
  const MAX_LINES = 20000;  // the DOM past this gets slow; older lines stay in the plain-text log
  /* Terminal escapes a job printed (colours, cursor moves, OSC titles and links): shown raw
   * they read "\x1b[31mred\x1b[0m". Dropped for display only: the plain-text log
   * (/logs.txt) and the API keep the bytes. CSI (ESC [ or 0x9b … final byte), OSC (ESC ] or
   * 0x9d … BEL, ESC \ or 0x9c; cut off at the line's end), and the other two-byte escapes. */
  const ANSI = /(?:\x1b\[|\x9b)[0-?]*[ -\/]*[@-~]|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[@-Z\\^_]/g;
  const plain = (line) => line.replace(ANSI, "");
  const PAGE = 5000;

  /* -- logs: load from the last seq, then follow the socket's log_lines ------------------ */
  function LogView(box, follow) {
    this.box = box;
    this.follow = follow;
    this.job = null;
    this.attempt = 0;
    this.last = 0;
    this.loading = null;
    this.queued = [];
    this.count = 0;
    if (follow) {
      box.addEventListener("scroll", () => {
        // Scrolling up to read stops following; back at the bottom resumes it.
        const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
        if (follow.checked !== atBottom && !this.scrolling) follow.checked = atBottom;
      });
      follow.addEventListener("change", () => { if (follow.checked) this.scroll(); });
    }
  }
  LogView.prototype.reset = function (job, attempt) {
    this.job = job;
    this.attempt = attempt || 0;
    this.last = 0;
    this.queued = [];
    this.count = 0;
    this.box.replaceChildren();
    const label = this.box.closest("#job-panel").querySelector(".log-attempt");
    if (label) label.textContent = this.attempt > 1 ? "attempt " + this.attempt : "";
  };
  LogView.prototype.load = function () {
    // One load at a time; lines the socket delivers meanwhile wait in `queued`.
    const job = this.job, attempt = this.attempt;
    if (this.loading) {
      if (this.loadingFor === job + "/" + attempt) return this.loading;
      // A load of another attempt is in flight (the page's first, made before the job
      // started, when its first lines arrive): that one gives up on its answer, so this one
      // follows it. Returning it instead left the new attempt's first lines unshown until
      // more came (a job that printed two lines and waited showed none).
      return this.loading.then(() => this.load());
    }
    this.loadingFor = job + "/" + attempt;
    this.loading = (async () => {
      try {
        // A first load reads the end of the log in one request (a finished job's 50,000
        // lines took 11 requests and 18 s, to keep the last 20,000 of them); later ones
        // page forward from the last line shown.
        const first = this.last === 0;
        for (;;) {
          let url = "/api/v1/jobs/%23" + job + "/logs?after=" + this.last + "&limit=" +
            (first ? MAX_LINES + "&tail=true" : PAGE);
          if (attempt > 0) url += "&attempt=" + attempt;
          const page = await T.getJSON(url);
          if (job !== this.job || attempt !== this.attempt) return;
          if (first && page.lines.length && page.lines[0].seq > 1) this.earlier(page.lines[0].seq - 1);
          this.append(page.lines);
          // `more`: a page ends short of PAGE lines at the master's byte cap too.
          if (first || !page.more) break;
        }
      } catch (err) {
        T.toast("Could not load logs: " + err.message, "error");
      } finally {
        this.loading = null;
      }
      const queued = this.queued;
      this.queued = [];
      if (queued.length) this.push(this.attempt, queued);
      if (!this.count && !this.box.querySelector(".log-empty")) {
        this.box.append(el("div", { class: "log-empty", text: this.emptyText() }));
      }
    })();
    return this.loading;
  };
  /* What an empty log says: "yet" only while the job may still print (a skipped job's
   * panel said "No output yet." for ever). */
  LogView.prototype.emptyText = function () {
    const j = this.shown;
    if (!j || !T.TERMINAL.has(j.state)) return "No output yet.";
    return (j.attempts || []).length ? "It printed nothing." : "No output: it never ran.";
  };
  LogView.prototype.follows = function (job) {
    this.shown = job;
    const empty = this.box.querySelector(".log-empty");
    if (empty) empty.textContent = this.emptyText();
  };
  LogView.prototype.push = function (attempt, lines) {
    if (attempt !== this.attempt) {
      if (attempt > this.attempt) {  // a retry started: show the new attempt from its start
        this.reset(this.job, attempt);
        this.load();
      }
      return;
    }
    if (this.loading) {
      this.queued.push(...lines);
      return;
    }
    if (lines.length && lines[0].seq > this.last + 1) {
      this.load();  // a gap (lines sent before we subscribed): fetch from the last seq
      return;
    }
    this.append(lines);
  };
  LogView.prototype.append = function (lines) {
    const fresh = lines.filter((l) => l.seq > this.last);
    if (!fresh.length) return;
    const empty = this.box.querySelector(".log-empty");
    if (empty) empty.remove();
    const frag = document.createDocumentFragment();
    for (const l of fresh) {
      // A piece of a line past 64 KiB: marked, the next line goes on from it.
      frag.append(el("div", { class: l.continues ? "log-line continues" : "log-line",
                              dataset: { seq: l.seq, stream: l.stream }, text: plain(l.line) }));
    }
    this.last = fresh[fresh.length - 1].seq;
    this.box.append(frag);
    this.count += fresh.length;
    let dropped = 0;
    while (this.count > MAX_LINES) {
      const line = this.box.querySelector(".log-line");
      if (!line) break;
      line.remove();
      this.count--;
      dropped = line.dataset.seq;
    }
    if (dropped) {  // the oldest lines left the page: say where they are
      const note = this.box.querySelector(".log-earlier");
      if (note) note.remove();
      this.earlier(Number(dropped));
    }
    this.scroll();
  };
  /* A note above the lines shown that `n` earlier ones are only in the plain-text log. */
  LogView.prototype.earlier = function (n) {
    const href = "/api/v1/jobs/%23" + this.job + "/logs.txt" +
      (this.attempt > 0 ? "?attempt=" + this.attempt : "");
    this.box.prepend(el("div", { class: "log-earlier muted" },
      n.toLocaleString() + " earlier line" + (n === 1 ? "" : "s") + " in the ",
      el("a", { href: href, text: "plain-text log" })));
  };
  LogView.prototype.scroll = function () {
    if (!this.follow || !this.follow.checked) return;
    this.scrolling = true;
    this.box.scrollTop = this.box.scrollHeight;
    requestAnimationFrame(() => { this.scrolling = false; });
  };

  /* -- details ---------------------------------------------------------------------------- */
  function row(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: label }), el("dd", {}, value));
  }

  // "http:/" is an HTTP GET of / (docs/api.md): said so, it does not read as a cut-off URL.
  const readiness = (r) => (r && r.startsWith("http:") ? "HTTP GET " + r.slice(5) : r);
  // A service's health, address, restarts and uptime, as the job page's template writes it.
  function serviceLine(job) {
    const s = job.service;
    const line = el("span", { class: "service-line" });
    if (s.health) line.append(el("span", { class: "badge", "data-status": s.health.toUpperCase(), text: s.health.toUpperCase() }), " ");
    if (s.address) line.append(el("code", { class: "service-address", text: s.address }), " ");
    // No health or address (a stopped service): no "·" with nothing before it.
    line.append((line.childNodes.length ? "· " : "") + "restarts " + s.restarts + " · readiness ",
                el("code", { text: readiness(s.readiness) }));
    if (s.uptime !== null) line.append(" · up " + T.duration(s.uptime));
    if (s.stopping) line.append(" · stopping");
    return line;
  }

  /* An attempts table without attempts: "yet" only while the job may still start. */
  const notStarted = (state) => T.TERMINAL.has(state) ? "Never ran: it ended " + state + "." : "Not started yet.";

  function renderDetails(root, job) {
    root.dataset.id = job.id;
    root.dataset.state = job.state;
    const title = root.querySelector(".job-title");
    if (title) title.textContent = job.job_id;
    const badge = root.querySelector(".job-state");
    if (badge) { badge.dataset.status = job.state; badge.textContent = job.state; }
    const link = root.querySelector(".job-page-link");
    if (link) link.href = "/jobs/" + job.id;
    const cancel = root.querySelector("[data-action=cancel-job]");
    if (cancel) { cancel.hidden = !T.ACTIVE.has(job.state); cancel.dataset.id = job.id; }
    const retry = root.querySelector("[data-action=retry-job]");
    if (retry) { retry.hidden = !T.RETRYABLE.has(job.state); retry.dataset.id = job.id; }
    const stop = root.querySelector("[data-action=stop-job]");
    if (stop) { stop.hidden = job.kind !== "service" || !T.ACTIVE.has(job.state); stop.dataset.id = job.id; }

    const dl = root.querySelector(".job-details");
    dl.replaceChildren();
    row(dl, "Reference", el("span", {}, el("code", { text: job.ref }), " ",
                            el("span", { class: "muted", text: "(id " + job.id + ")" })));
    row(dl, "Kind", job.kind + " (" + job.job_type + ")");
    if (job.kind !== "approval") {
      row(dl, "Script", el("code", { text: job.filename }));
      row(dl, "Args", job.args && job.args.length ? el("code", { text: job.args.join(" ") })
                                                  : el("span", { class: "muted", text: "none" }));
      row(dl, "Requirement", el("span", {}, el("span", { class: "tag", text: job.requirement }),
                                " · priority " + job.priority));
      row(dl, "Worker", job.worker_id || "—");
      row(dl, "Attempt", job.attempt + " of " + job.max_attempts);
      row(dl, "Exit code", job.exit_code === null ? "—" : String(job.exit_code));
    }
    if (job.service) row(dl, "Service", serviceLine(job));
    if (job.parents && job.parents.length) row(dl, "Parents", job.parents.join(", "));
    if (job.error) row(dl, "Error", el("pre", { class: "error", text: job.error }));
    row(dl, "Reason", job.reason);
    row(dl, "Message", job.hitl_message);
    if (job.state === "WAITING_APPROVAL" && job.approval_deadline) row(dl, "Deadline", T.timeEl(job.approval_deadline));
    row(dl, "Submitted", T.timeEl(job.submitted_at));
    row(dl, "Started", T.timeEl(job.started_at));
    row(dl, "Finished", T.timeEl(job.finished_at));
    if (job.started_at && job.finished_at) row(dl, "Duration", T.duration(job.finished_at - job.started_at));

    const decision = root.querySelector(".job-decision");
    if (decision) {
      decision.replaceChildren();
      decision.hidden = !job.decided_at;
      if (job.decided_at) {
        decision.append(el("strong", { text: job.state }));
        if (job.decided_by) decision.append(" by ", el("span", { class: "decided-by", text: job.decided_by }));
        decision.append(" ", T.timeEl(job.decided_at));
        if (job.decision_comment) decision.append(el("blockquote", { class: "decision-comment", text: job.decision_comment }));
      }
    }
    // A retried gate asked again: who decided before, when and why, kept below.
    const earlier = root.querySelector(".job-decisions ul");
    if (earlier) {
      earlier.replaceChildren();
      earlier.parentElement.hidden = !(job.decisions && job.decisions.length);
      for (const d of job.decisions || []) {
        const li = el("li", { class: "earlier-decision" });
        li.append(el("strong", { text: d.state }));
        if (d.decided_by) li.append(" by ", el("span", { class: "decided-by", text: d.decided_by }));
        li.append(" ", T.timeEl(d.decided_at), " · asked again ", T.timeEl(d.retried_at));
        if (d.retried_by) li.append(" by ", el("span", { class: "retried-by", text: d.retried_by }));
        if (d.comment) li.append(el("blockquote", { class: "decision-comment", text: d.comment }));
        earlier.append(li);
      }
    }

    // A gate never runs: no attempts, no log (the panel said "Not started yet.", "No output yet.").
    const ran = root.querySelector(".job-run");
    if (ran) ran.hidden = job.kind === "approval";
    const tbody = root.querySelector(".attempts tbody");
    if (tbody) {
      tbody.replaceChildren();
      for (const a of job.attempts || []) {
        const dur = a.finished_at ? T.duration(a.finished_at - a.started_at) : "—";
        tbody.append(el("tr", { class: "attempt", dataset: { attempt: a.attempt } },
          el("td", { class: "num", text: a.attempt }),
          el("td", {}, el("span", { class: "badge", dataset: { status: a.state }, text: a.state })),
          el("td", { text: a.worker_id || "—" }),
          el("td", { class: "num", text: a.exit_code === null ? "—" : a.exit_code }),
          el("td", {}, T.timeEl(a.started_at)),
          el("td", { class: "num", text: dur }),
          el("td", {}, a.error ? el("span", { class: "error", title: a.error, text: a.error.slice(0, 80) }) : null)));
      }
      if (!tbody.children.length) tbody.append(el("tr", { class: "empty" }, el("td", { colspan: 7, text: notStarted(job.state) })));
    }
  }

  /* JobView(root, live): shows one job in `root` (#job-panel) and keeps it live. */
  T.JobView = function (root, live) {
    this.root = root;
    this.live = live;
    this.id = null;
    this.job = null;
    this.logs = new LogView(root.querySelector("#log-lines"), root.querySelector("#follow"));
    this.refresh = T.throttle(() => this.reload(), 300);
  };
  T.JobView.prototype.open = async function (id) {
    this.id = id;
    this.root.hidden = false;
    if (this.live) this.live.setJob(id);
    await this.reload(true);
  };
  T.JobView.prototype.close = function () {
    this.id = null;
    this.root.hidden = true;
    if (this.live) this.live.setJob(null);
  };
  T.JobView.prototype.reload = async function (fresh) {
    const id = this.id;
    if (id === null) return;
    // Reloads can overlap (an event, a reconnect): only the newest answer is shown.
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    let job;
    try {
      job = await T.getJSON("/api/v1/jobs/%23" + id);
    } catch (err) {
      if (ticket === this.ticket) T.toast("Could not load job " + id + ": " + err.message, "error");
      return;
    }
    if (id !== this.id || ticket !== this.ticket) return;
    this.job = job;
    renderDetails(this.root, job);
    if (this.onChange) this.onChange(job);
    if (!this.logs.box || job.kind === "approval") return;
    if (fresh || this.logs.job !== id || job.attempt > this.logs.attempt) {
      this.logs.reset(id, job.attempt);
    }
    this.logs.follows(job);
    this.logs.load();  // from the last seq: after a reconnect, only what was missed
  };
  T.JobView.prototype.onEvent = function (msg) {
    if (this.id === null) return;
    if (msg.type === "job_updated" && msg.data.id === this.id) this.refresh();
    else if (msg.type === "log_lines" && msg.data.job === this.id && this.logs.box) {
      this.logs.push(msg.data.attempt, msg.data.lines);
    }
  };

  /* -- the approval banner ----------------------------------------------------------------- */
  T.ApprovalBanner = function (box) {
    this.box = box;
  };
  T.ApprovalBanner.prototype.current = function () {
    return this.box && this.box.dataset.id ? Number(this.box.dataset.id) : null;
  };
  T.ApprovalBanner.prototype.show = function (gate, more) {
    const b = this.box;
    if (!b) return;
    const same = this.current() === gate.id;
    b.dataset.jobId = gate.job_id;
    b.dataset.id = gate.id;
    b.querySelector(".gate-name").textContent = gate.job_id;
    b.querySelector(".hitl-message").textContent = gate.hitl_message || "This gate is waiting for a decision.";
    const deadline = b.querySelector(".deadline");
    deadline.hidden = !gate.approval_deadline;
    if (gate.approval_deadline) deadline.querySelector("time").replaceWith(T.timeEl(gate.approval_deadline));
    const moreBox = b.querySelector(".more-gates");
    moreBox.hidden = !more;
    moreBox.textContent = more ? more + " more gate(s) waiting" : "";
    const comment = b.querySelector("textarea[name=comment]");
    if (comment && !same) comment.value = "";
    b.hidden = false;
  };
  T.ApprovalBanner.prototype.hide = function () {
    if (!this.box) return;
    this.box.hidden = true;
    this.box.dataset.jobId = "";
    this.box.dataset.id = "";
  };

  /* -- buttons: one delegated handler for every page ----------------------------------------- */
  async function act(button, method, url, body, done) {
    button.disabled = true;
    try {
      await T.api(method, url, body);
      T.toast(done);
    } catch (err) {
      T.toast(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  T.onAction = null;  // a page's hook after an action succeeded (refresh what it shows)
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const banner = document.getElementById("approval-banner");
    if (action === "cancel-job" || action === "retry-job" || action === "stop-job") {
      const id = button.dataset.id || button.closest("#job-panel").dataset.id;
      const verb = action.slice(0, -4);
      await act(button, "POST", "/api/v1/jobs/%23" + id + "/" + verb, undefined,
                { cancel: "Job cancelled", retry: "Job queued again", stop: "Stopping the service" }[verb]);
    } else if (action === "cancel-dag") {
      // Every job of the DAG still to run stops at once, and that cannot be undone (a retry
      // runs them again from the start): asked first, as Prefect and Airflow ask.
      if (!window.confirm("Cancel this DAG? Its running jobs are stopped and the jobs still to run never start.")) return;
      await act(button, "POST", "/api/v1/dags/%23" + button.dataset.dagId + "/cancel", undefined, "DAG cancelled");
    } else if (action === "approve" || action === "reject") {
      const comment = banner.querySelector("textarea[name=comment]").value;
      await act(button, "POST", "/api/v1/jobs/%23" + banner.dataset.id + "/" + action,
                { comment: comment || null }, action === "approve" ? "Approved" : "Rejected");
    } else {
      return;
    }
    if (T.onAction) T.onAction(action);
  });
})();
