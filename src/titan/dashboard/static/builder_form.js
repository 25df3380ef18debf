/* The DAG builder's job form: the fields of the job selected in the graph.
 *
 * Each keystroke writes the field into the draft and tells the builder (hooks.edited), which
 * has the master check the draft again: nothing here decides what is valid. Number fields are
 * plain text on purpose: what was typed reaches the master as typed when it is not a number
 * ("high"), so its own message names the mistake instead of the browser dropping the value.
 *
 *   new Titan.JobForm(aside, {edited(field), removeJob(), closed(), removeParent(key),
 *                             addParent(key), candidates() -> [{key, label}],
 *                             upload(file) -> Promise<name>, parentName(key)})
 *
 * The dependency picker under "Depends on" does what dragging does, for the keyboard.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const NUMBERS = new Set(["priority", "retries", "timeout", "max_wait_seconds"]);
  const TEXTS = ["job_id", "filename", "args", "requirement", "hitl_message"];
  // The field a problem names -> the input it is about (the payload's name for a script).
  const INPUT_OF = { script_sha256: "filename", job_type: "kind", parents: null };

  /* A number field's value: null when empty (the default), a number when it reads as one,
   * else the text itself. */
  function parse(text) {
    const t = text.trim();
    if (t === "") return null;
    return Number.isFinite(Number(t)) ? Number(t) : t;
  }
  const shown = (v) => (v === null || v === undefined ? "" : String(v));
  T.isGate = (job) => String(job.job_type || "").toUpperCase() === "APPROVAL";

  class JobForm {
    constructor(root, hooks) {
      this.root = root;
      this.hooks = hooks;
      this.job = null;
      this.field = (name) => root.querySelector('[name="' + name + '"]');
      root.addEventListener("input", (e) => this.edit(e.target));
      root.addEventListener("change", (e) => {
        if (e.target.name === "kind") this.edit(e.target);
        else if (e.target.id === "script-upload") this.upload(e.target);
        else if (e.target.classList.contains("add-parent") && e.target.value !== "") {
          hooks.addParent(Number(e.target.value));
        }
      });
      root.addEventListener("click", (e) => {
        const action = e.target.closest("[data-action]");
        if (!action) return;
        if (action.dataset.action === "close-form") hooks.closed();
        else if (action.dataset.action === "remove-job") hooks.removeJob();
        else if (action.dataset.action === "remove-parent") hooks.removeParent(Number(action.dataset.key));
      });
    }

    open(job) {
      this.job = job;
      for (const name of TEXTS) this.field(name).value = shown(job[name]);
      for (const name of NUMBERS) this.field(name).value = shown(job[name]);
      this.field("kind").value = T.isGate(job) ? "gate" : "script";
      this.root.hidden = false;
      this.refresh();
    }

    close() {
      this.job = null;
      this.root.hidden = true;
    }

    /* What follows from the job's kind and its parents (the fields themselves are the user's). */
    refresh() {
      const job = this.job;
      if (!job) return;
      const gate = T.isGate(job);
      this.root.querySelector(".job-title").textContent = job.job_id || "(no id)";
      this.root.querySelector(".script-fields").hidden = gate;
      this.root.querySelector(".gate-legend").textContent = gate
        ? "The gate: it waits for an Approve or Reject on its DAG's page"
        : "Approval after it (optional): its children wait for an Approve";
      const list = this.root.querySelector(".parent-list");
      list.replaceChildren(...job.parents.map((key) => T.el("li", { class: "parent", dataset: { key: key } },
        T.el("code", { text: this.hooks.parentName(key) }), " ",
        T.el("button", { type: "button", class: "link", "data-action": "remove-parent", "data-key": key,
                         title: "Remove this dependency", "aria-label": "Remove this dependency", text: "×" }))));
      this.root.querySelector(".parents-none").hidden = job.parents.length > 0;
      const others = this.hooks.candidates();
      const pick = this.root.querySelector(".add-parent");
      pick.replaceChildren(T.el("option", { value: "", text: "+ depends on…" }),
        ...others.map((o) => T.el("option", { value: o.key, text: o.label })));
      pick.hidden = others.length === 0;
    }

    edit(input) {
      const job = this.job, name = input.name;
      if (!job || !name) return;
      if (name === "kind") {
        // Back to a script: the type it had before it became a gate, if it had another.
        if (input.value === "gate") { job.previous_type = job.job_type; job.job_type = "APPROVAL"; }
        else job.job_type = job.previous_type && job.previous_type !== "APPROVAL" ? job.previous_type : "RUN_PAYLOAD";
      } else if (NUMBERS.has(name)) {
        job[name] = parse(input.value);
      } else if (name === "hitl_message") {
        job[name] = input.value === "" ? null : input.value;
      } else {
        job[name] = input.value;
      }
      this.refresh();
      this.hooks.edited(name);
    }

    async upload(input) {
      const file = input.files[0];
      input.value = "";
      if (!file || !this.job) return;
      const job = this.job;
      try {
        job.filename = await this.hooks.upload(file);
      } catch (err) {
        T.toast("Upload failed: " + err.message, "error");
        return;
      }
      if (this.job === job) this.field("filename").value = job.filename;
      this.hooks.edited("filename");
    }

    /* This job's problems: listed at the top, and the inputs they are about marked. */
    showProblems(problems) {
      for (const el of this.root.querySelectorAll(".invalid")) el.classList.remove("invalid");
      const list = this.root.querySelector(".job-problems");
      list.replaceChildren(...problems.map((p) => T.el("li", { dataset: { field: p.field || "", code: p.code }, text: p.message })));
      for (const p of problems) {
        const name = p.field in INPUT_OF ? INPUT_OF[p.field] : p.field;
        const input = name ? this.field(name) : null;
        if (input) input.classList.add("invalid");
      }
    }
  }

  T.JobForm = JobForm;
})();
