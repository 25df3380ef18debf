/* The run registry (/runs), live, and the run cards it shares with the agent page.
 *
 * Cards are rendered on the server (templates/_runs.html). Run events patch a card in place
 * (cost, actions, success rate, status, end) the moment they arrive; anything that can
 * change which runs the page lists — a new run, a run that ended, one that crossed its
 * budget or the page's min cost, one whose cost moves it on a page sorted by cost — re-reads
 * the list region from the server instead (at most once a second), so the filters and the
 * order are applied in one place. Titan.runCards is what agent.js reuses.
 */
(function () {
  "use strict";
  const T = window.Titan;

  /* '$0.0008', '$12.40', '$0.0000059': four decimals read a few cheap calls as $0.0000, so a
   * smaller cost that is not zero keeps two significant digits (formats.cost_places). */
  T.usd = function (v) {
    if (v === null || v === undefined) return "—";
    if (v >= 1) return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    const size = Math.abs(v);
    const places = size === 0 || size >= 0.0001 || !isFinite(size) ? 4
      : Math.min(1 - Math.floor(Math.log10(size)), 12);
    return "$" + v.toFixed(places);
  };
  /* A run's cost as the pages write it (runs_pages.run_cost): a lower bound, or unknown,
   * when some of its LLM calls have no known price. */
  T.runCost = function (r) {
    if (!r.unpriced_calls) return T.usd(r.cost_usd);
    return r.cost_usd ? "≥ " + T.usd(r.cost_usd) : "unknown";
  };
  T.showCost = function (el, r) {  // the text and the title that says why (runs_pages.cost_note)
    const n = r.unpriced_calls || 0;
    el.textContent = T.runCost(r);
    el.title = !n ? "" : (n === 1 ? "1 LLM call" : n.toLocaleString("en-US") + " LLM calls") +
      " on a model with no known price (not counted); register its price with " +
      "titan.llm.register_price or TITAN_LLM_PRICES";
  };
  T.pct = function (rate) {
    if (rate === null || rate === undefined) return "—";
    return (rate * 100).toFixed(1).replace(/\.0$/, "") + "%";
  };

  /* The newest summary seen per run: a region re-read that left before an event arrived
   * must not put older numbers back (counts only grow; an ended run stays ended). */
  const latest = new Map();

  function find(id, root) {
    return (root || document).querySelector('.run-card[data-run-id="' + CSS.escape(id) + '"]');
  }

  function tick(card) {
    const started = Number(card.dataset.startedAt);
    const ended = card.dataset.endedAt ? Number(card.dataset.endedAt) : null;
    const dd = card.querySelector(".duration");
    if (!dd || isNaN(started)) return;
    if (ended !== null) dd.textContent = T.duration(Math.max(0, ended - started));
    else if (card.dataset.status === "running") dd.textContent = T.duration(Math.max(0, Date.now() / 1000 - started));
  }

  function apply(card, s) {
    const actions = card.querySelector(".actions");
    const shown = Number(actions.dataset.count) || 0;
    if ((s.action_count || 0) < shown) return false;  // an older summary than the card's
    if (card.dataset.status !== "running" && s.status === "running") return false;
    const changed = card.dataset.status !== s.status ||
      card.querySelector(".cost").textContent !== T.runCost(s) || shown !== s.action_count;
    card.dataset.status = s.status;
    const badge = card.querySelector(".run-status");
    badge.className = "badge run-status status-" + s.status;
    badge.dataset.status = s.status;
    badge.textContent = s.status;
    actions.dataset.count = s.action_count || 0;
    actions.textContent = (s.action_count || 0).toLocaleString("en-US");
    T.showCost(card.querySelector(".cost"), s);
    card.dataset.cost = s.cost_usd || 0;  // what a page sorted by cost orders by
    // The server's rate (master/runs/events.success_rate): a replay's served calls count.
    card.querySelector(".success").textContent = T.pct(s.success_rate);
    const flag = card.querySelector(".over-budget");
    if (flag) {
      flag.hidden = !s.over_budget_at;
      // Not blocked any more: its budget was raised after it went over (_runs.html says so).
      flag.textContent = s.blocked || !s.over_budget_at ? "over budget" : "went over budget";
      flag.title = "spent past its budget" + (s.blocked || !s.over_budget_at ? "" : ", which was raised since");
    }
    if (s.ended_at !== null && s.ended_at !== undefined) {
      card.dataset.endedAt = s.ended_at;
      card.querySelector(".ended").replaceChildren(T.timeEl(s.ended_at));
    }
    tick(card);
    if (changed) {
      card.classList.remove("changed");
      void card.offsetWidth;  // restart the highlight animation
      card.classList.add("changed");
    }
    return true;
  }

  T.runCards = {
    /* Patch the card of summary s (a run event's data), if this page shows it. */
    patch(s) {
      if (latest.size > 1000) latest.delete(latest.keys().next().value);
      latest.set(s.id, s);
      const card = find(s.id);
      return card ? apply(card, s) : false;
    },
    /* For Titan.swapRegion's mark(fresh): re-apply what events said since the fetch left. */
    reapply(fresh) {
      for (const card of fresh.querySelectorAll(".run-card")) {
        const s = latest.get(card.dataset.runId);
        if (s) apply(card, s);
      }
    },
    has: (id) => find(id) !== null,
  };
  // Running durations keep counting: rewording only, nothing is fetched.
  setInterval(() => {
    for (const card of document.querySelectorAll('.run-card[data-status="running"]')) tick(card);
  }, 1000);

  if (document.body.dataset.page !== "runs") return;

  // -- the registry page -------------------------------------------------------------------
  const withActions = document.getElementById("export-actions");
  function exportLinks() {
    for (const a of document.querySelectorAll("a.export")) {
      const url = new URL(a.getAttribute("href"), location.href);
      url.searchParams.set("actions", withActions.checked ? "true" : "false");
      a.setAttribute("href", url.pathname + url.search);
    }
  }
  withActions.addEventListener("change", exportLinks);
  exportLinks();

  // Seed 004's "/" (focus search), here as on a run's page (run.js): never while typing.
  const search = document.querySelector('#run-filters input[name="q"]');
  document.addEventListener("keydown", (e) => {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    const t = e.target;
    if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    e.preventDefault();
    search.focus();
    search.select();
  });

  const region = document.getElementById("runs-live");
  const firstPage = (Number(region.dataset.offset) || 0) === 0;
  const refresh = T.throttle(() => T.swapRegion("runs-live", T.runCards.reapply), 1000);

  // A running run that passes the min cost filter joins the list then, not when it ends
  // (when a running-only page would drop it again): once per run, the server deciding.
  const minCost = Number(new URLSearchParams(location.search).get("min_cost")) || 0;
  const passedMinCost = new Set();
  function crossedMinCost(s, shown) {
    return Boolean(minCost) && !shown && s.cost_usd >= minCost && once(passedMinCost, s.id);
  }
  const overBudget = new Set(), interventions = new Set(), released = new Set();
  function once(seen, id) {  // true the first time: a run re-reads the list once per reason
    if (seen.has(id)) return false;
    if (seen.size > 1000) seen.clear();
    seen.add(id);
    return true;
  }

  // On a page sorted by cost, a run whose cost passes the card above its own (or, not
  // listed, the cheapest card here) moves: the page re-reads its list, the server ordering.
  const params = new URLSearchParams(location.search);
  const byCost = params.get("sort") === "cost";
  const agent = (params.get("agent") || "").trim();
  const statuses = params.getAll("status").flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
  const costSeen = new Map();  // run id → the cost its last event said
  function movedByCost(s, shown) {
    if (!byCost) return false;
    const before = costSeen.has(s.id) ? costSeen.get(s.id) : null;
    if (costSeen.size > 1000) costSeen.clear();
    costSeen.set(s.id, s.cost_usd || 0);
    const cost = s.cost_usd || 0;
    if (before === cost) return false;
    const cards = Array.from(document.querySelectorAll("#runs-live .run-card"));  // swapped
    const costOf = (card) => Number(card.dataset.cost) || 0;
    if (shown) {
      const i = cards.findIndex((c) => c.dataset.runId === s.id);
      const above = cards[i - 1], below = cards[i + 1];
      return Boolean((above && costOf(above) < cost) || (below && costOf(below) > cost));
    }
    // Not listed: one the filters leave out never moves in; one listed on another page
    // (or not yet) moves in once, as it passes this page's cheapest card.
    if ((agent && s.agent_id !== agent) || (statuses.length && !statuses.includes(s.status))) return false;
    const last = cards[cards.length - 1];
    return Boolean(last) && cost > costOf(last) && (before === null || before <= costOf(last));
  }

  // On a page sorted by duration a running run's grows by the second, with no event to say
  // so: once it outlasts the card above it (or, on the first page, one running elsewhere
  // outlasts the shortest card here) the page re-reads its list. Each pair once: a browser
  // clock ahead of the server's must not make the page re-read for ever.
  const byDuration = params.get("sort") === "duration";
  const runningElsewhere = new Map();  // run id → started_at, from its events
  const durationAsked = new Set();
  function lasted(card) {
    const started = Number(card.dataset.startedAt) || 0;
    if (card.dataset.endedAt) return Number(card.dataset.endedAt) - started;
    return card.dataset.status === "running" ? Date.now() / 1000 - started : 0;
  }
  function outlasted() {
    const cards = Array.from(document.querySelectorAll("#runs-live .run-card"));
    for (let i = 1; i < cards.length; i++) {
      if (lasted(cards[i]) > lasted(cards[i - 1]) + 1 &&
          once(durationAsked, cards[i].dataset.runId + ">" + cards[i - 1].dataset.runId)) return true;
    }
    const last = cards[cards.length - 1];
    if (!firstPage || !last) return false;
    for (const [id, started] of runningElsewhere) {
      if (!find(id) && Date.now() / 1000 - started > lasted(last) + 1 &&
          once(durationAsked, id + ">" + last.dataset.runId)) return true;
    }
    return false;
  }
  if (byDuration) setInterval(() => { if (!document.hidden && outlasted()) refresh(); }, 2000);

  function interceptShown(id) {
    return document.querySelector('#intercepts .intercept[data-run-id="' + CSS.escape(id) + '"]') !== null;
  }

  T.live({
    types: ["run_created", "run_updated", "run_completed", "run_failed"],
    onEvent(msg) {
      const s = msg.data;
      const shown = T.runCards.patch(s);
      if (byDuration && s.status === "running" && s.started_at &&
          (!agent || s.agent_id === agent) && (!statuses.length || statuses.includes("running"))) {
        if (runningElsewhere.size > 1000) runningElsewhere.clear();
        runningElsewhere.set(s.id, s.started_at);
      } else {
        runningElsewhere.delete(s.id);
      }
      if (!s.over_budget_at) overBudget.delete(s.id);  // its budget raised: it may cross again
      if (s.blocked) released.delete(s.id);  // over again: a later raise rewords it again
      const alert = Number((document.getElementById("intercepts") || {dataset: {}}).dataset.interventionAlert);
      // As storage's intercept query counts (a replay, served by design, is no intercept:
      // the server leaves it out when the page re-reads).
      const intervened = Boolean(alert) && s.action_count > 0 &&
        (s.blocked_count || 0) + (s.replayed_count || 0) >= s.action_count * alert;
      if (!intervened) interventions.delete(s.id);  // back under the rate: it may cross again
      if (msg.type === "run_created") {
        if (firstPage) refresh();  // the server decides whether it matches the filters
      } else if (msg.type === "run_completed" || msg.type === "run_failed") {
        refresh();  // it may leave a status filter, or join the intercepts
      } else if (s.over_budget_at && !interceptShown(s.id) && once(overBudget, s.id)) {
        // It just crossed its budget: an intercept now, whether or not the page's filters
        // list its card (the intercepts answer only to the time window).
        refresh();
      } else if (s.over_budget_at && !s.blocked && interceptShown(s.id) && once(released, s.id)) {
        refresh();  // its budget raised: its intercept now says it went over, not that it is
      } else if (intervened && !interceptShown(s.id) && once(interventions, s.id)) {
        refresh();  // a high intervention rate (views.INTERVENTION_ALERT): an intercept now
      } else if (crossedMinCost(s, shown) || movedByCost(s, shown)) {
        refresh();
      }
    },
    onResync: refresh,
  });
})();
