/* The job page: details and logs kept live (the markup is the server's; updates re-render
 * it with the same code as the DAG page's panel). */
(function () {
  "use strict";
  const T = window.Titan;
  const root = document.getElementById("job-panel");
  const id = Number(root.dataset.id);
  const dagId = Number(root.dataset.dagId);
  const dagBadge = root.querySelector(".dag-badge");
  function dagStatus(status) {
    dagBadge.dataset.status = status;
    dagBadge.textContent = status;
  }
  const live = T.live({
    types: ["job_updated", "dag_updated", "log_lines"], dag: dagId, job: id,
    onEvent: (msg) => {
      if (msg.type === "dag_updated" && msg.data.id === dagId) dagStatus(msg.data.status);
      view.onEvent(msg);
    },
    onResync: () => {
      view.reload();
      T.getJSON(location.pathname + ".json").then((d) => dagStatus(d.dag.status), () => {});
    },
  });
  const view = new T.JobView(root, live);
  const banner = new T.ApprovalBanner(document.getElementById("approval-banner"));
  view.id = id;
  view.onChange = (job) => {
    if (job.state === "WAITING_APPROVAL") banner.show(job, 0);
    else banner.hide();
  };
  T.onAction = () => view.reload();
  view.reload(true);  // now, not on the socket: logs show even while it is connecting
})();
