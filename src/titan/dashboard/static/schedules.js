/* The Schedules page: pause, resume, "run now" and edit (operators), and live updates.
 *
 * A button posts to the API with the session cookie and the session's write key (Titan.api),
 * then the table is re-read from the server. The table is also re-read when a schedule
 * changes (a tick fired, someone paused it elsewhere) or when a run it shows changes status:
 * at most once a second, and on every reconnect, since events sent meanwhile are gone.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const region = () => document.getElementById("schedules");
  const refresh = T.throttle(() => T.swapRegion("schedules"), 1000);
  const DONE = { pause: "paused", resume: "resumed" };

  /* Edit: the row's rule and policies in a dialog; Save sends only what changed (PATCH). */
  const dialog = document.getElementById("schedule-edit");
  const FIELDS = ["cron", "timezone", "catchup", "overlap"];
  let editing = null;

  function openEditor(row) {
    editing = row;
    const form = dialog.querySelector("form");
    dialog.querySelector(".schedule-edit-name").textContent = row.dataset.name;
    for (const f of FIELDS) form.elements[f].value = row.dataset[f];
    dialog.querySelector("#schedule-edit-error").hidden = true;
    dialog.showModal();
    form.elements.cron.focus();
  }

  if (dialog) {
    dialog.querySelector("[data-action=close-edit]").addEventListener("click", () => dialog.close());
    dialog.querySelector("form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = e.target, name = editing.dataset.name, body = {};
      for (const f of FIELDS) {
        if (form.elements[f].value.trim() !== editing.dataset[f]) body[f] = form.elements[f].value.trim();
      }
      if (!Object.keys(body).length) { dialog.close(); return; }
      const save = form.querySelector("button[type=submit]");
      save.disabled = true;
      try {
        await T.api("PATCH", "/api/v1/schedules/" + encodeURIComponent(name), body);
        dialog.close();
        T.toast("Schedule " + name + " changed");
        await T.swapRegion("schedules");
      } catch (err) {  // the master's own message, naming the field; nothing was changed
        const box = dialog.querySelector("#schedule-edit-error");
        box.textContent = err.message;
        box.hidden = false;
      } finally {
        save.disabled = false;
      }
    });
  }

  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action][data-name]");
    if (!button || !region() || !region().contains(button)) return;
    const name = button.dataset.name, action = button.dataset.action;
    if (action === "edit") {
      openEditor(button.closest(".schedule-row"));
      return;
    }
    button.disabled = true;
    try {
      const reply = await T.api("POST", "/api/v1/schedules/" + encodeURIComponent(name) + "/" + action);
      T.toast(action === "run" ? "Started DAG-" + reply.ref : "Schedule " + name + " " + DONE[action]);
      await T.swapRegion("schedules");
    } catch (err) {
      T.toast(err.message, "error");
      button.disabled = false;
    }
  });

  T.live({
    types: ["schedule_updated", "dag_updated"],
    onEvent: (msg) => {
      // Any DAG's status change comes by; only those of runs shown here matter.
      if (msg.type === "dag_updated" &&
          !region().querySelector('[data-dag-id="' + Number(msg.data.id) + '"]')) return;
      refresh();
    },
    onResync: (first) => { if (!first) refresh(); },
  });
})();
