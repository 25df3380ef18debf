/* The Schedules page: pause, resume and "run now" buttons (operators), and live updates.
 *
 * A button posts to the API with the session cookie and the page's CSRF token (Titan.api),
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

  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action][data-name]");
    if (!button || !region() || !region().contains(button)) return;
    const name = button.dataset.name, action = button.dataset.action;
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
