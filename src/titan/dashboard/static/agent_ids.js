/* The agent fields of the Runs and Activity Ledger pages: "type to search and select" (seed
 * 004). The page lists the first agent ids (alphabetically) in the field's datalist; a fleet
 * past those would never be offered the rest, so as the user types the list is re-read from
 * GET /api/v1/agents?q= (the ids containing what is typed).
 */
(function () {
  "use strict";
  const T = window.Titan;
  const SHOWN = 50;

  for (const input of document.querySelectorAll('input[list="agent-ids"]')) {
    const list = document.getElementById("agent-ids");
    if (!list) continue;
    const first = Array.from(list.options, (o) => o.value);
    let asked = null;
    let pending = null;

    function show(ids) {
      list.replaceChildren(...ids.map((id) => T.el("option", { value: id })));
    }

    async function suggest() {
      const text = input.value.trim();
      if (asked) asked.abort();
      if (!text) { show(first); return; }
      asked = new AbortController();
      const mine = asked;
      try {
        const r = await T.fetch("/api/v1/agents?" + new URLSearchParams({ q: text, limit: SHOWN }),
          { credentials: "same-origin", headers: { Accept: "application/json" }, signal: mine.signal });
        if (!r.ok) return;  // the field still takes any id typed in full
        const data = await r.json();
        if (mine === asked) show(data.agent_ids || []);
      } catch (e) {
        // Aborted by a later keystroke, or the master is away: keep what is listed.
      }
    }

    input.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(suggest, 150);
    });
  }
})();
