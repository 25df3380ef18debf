/* Live updates for the list pages (Cluster, DAG Pipelines, Store, Activity Ledger).
 *
 * Each keeps one region of the page fresh by re-reading it from the server when an event
 * says it changed (at most once a second: a busy cluster sends hundreds of events a second),
 * and on every (re)connect, since events sent while the socket was down are gone.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const page = document.body.dataset.page;

  if (page === "cluster") {
    const refresh = T.throttle(() => T.swapRegion("cluster"), 1000);
    T.live({ types: ["worker_updated", "job_updated"], onEvent: refresh, onResync: refresh });
  } else if (page === "dags") {
    const refresh = T.throttle(() => T.swapRegion("dag-list"), 1000);
    T.live({ types: ["dag_created", "dag_updated"], onEvent: refresh, onResync: refresh });
    // A running DAG's duration counts on between its events (none comes while a long job
    // runs), in step with its "started" time: rewording only, nothing is fetched.
    setInterval(() => {
      if (document.hidden) return;
      for (const td of document.querySelectorAll("#dag-list td.duration[data-running-since]")) {
        const text = T.duration(Math.max(0, Date.now() / 1000 - Number(td.dataset.runningSince)));
        if (td.textContent !== text) td.textContent = text;
      }
    }, 1000);
  } else if (page === "ledger") {
    // The newest page only: a page further back is a fixed slice of the past. Every refresh
    // re-reads the page, verdicts included, so new actions arrive with their chain status.
    const params = new URLSearchParams(location.search);
    const newest = !params.get("before") && !params.get("after");
    const refresh = T.throttle(() => { if (newest) T.swapRegion("ledger-live"); }, 2000);
    T.live({ types: ["action_created"], run: params.get("run") || undefined,
             onEvent: refresh, onResync: (first) => { if (!first) refresh(); } });
  } else if (page === "store") {
    const prefix = document.getElementById("store").dataset.prefix || "";
    const changed = new Set();
    const mark = (fresh) => {
      for (const tr of fresh.querySelectorAll("tr.store-key")) {
        if (changed.has(tr.dataset.key)) tr.classList.add("changed");
      }
      changed.clear();
    };
    const refresh = T.throttle(() => T.swapRegion("store", mark), 500);
    T.live({
      types: ["store_updated"],
      onEvent: (msg) => {
        const key = msg.data.key;
        if (!key.startsWith(prefix)) return;
        changed.add(key);
        for (const tr of document.querySelectorAll("tr.store-key")) {
          if (tr.dataset.key === key) tr.classList.toggle("deleted", msg.data.op === "delete");
        }
        refresh();
      },
      onResync: refresh,
    });
  }
})();
