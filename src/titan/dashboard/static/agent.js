/* One agent (/agents/<agent_id>), live: its run cards are patched from run events as they
 * arrive (Titan.runCards, from runs.js), and the totals, chart and list are re-read from the
 * server at most every two seconds while its runs change — and on every (re)connect.
 */
(function () {
  "use strict";
  const T = window.Titan;
  const agentId = document.body.dataset.agentId;
  const refresh = T.throttle(() => T.swapRegion("agent-body", T.runCards.reapply), 2000);
  T.live({
    types: ["run_created", "run_updated", "run_completed", "run_failed"],
    onEvent(msg) {
      if (msg.data.agent_id !== agentId) return;
      T.runCards.patch(msg.data);
      refresh();
    },
    onResync: refresh,  // events sent before the socket opened are gone: re-read
  });
})();
