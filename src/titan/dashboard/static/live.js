/* Titan dashboard: helpers every page shares, and the one live connection.
 *
 * Pages never poll: each opens the master's WebSocket (/api/v1/events) through Titan.live,
 * patches itself from the events, and refetches its JSON (or HTML) when told to resync —
 * on every (re)connect, since events sent while it was away are gone.
 * Data is always put in the DOM with textContent: never innerHTML with anything from the
 * server.
 */
(function () {
  "use strict";

  function meta(name) {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.content : "";
  }

  /* Titan registers no service worker. One found here was put by whoever held this origin
   * before (over plain HTTP, a local user listening on the dashboard's port while the master
   * was down): it sees what the pages send, a token typed to sign in included. Remove it, and
   * load the page again outside it before anything is typed. */
  if (navigator.serviceWorker && navigator.serviceWorker.getRegistrations) {
    navigator.serviceWorker.getRegistrations().then(function (found) {
      if (!found.length) return;
      Promise.all(found.map(function (r) { return r.unregister(); })).then(function () {
        if (navigator.serviceWorker.controller) location.reload();
      });
    }).catch(function () {});
  }

  /* A filter form (method=get: the page's address is its state) shows what the address asks
   * for, as the server rendered it. On Back, Chromium put back what the user had typed and
   * ticked instead — from the back/forward cache, the page as it was left (edited, then
   * submitted), or its own form restoration — so the form disagreed with the address and
   * the rows. The server's defaults are the address's: go back to them whenever the page is
   * shown (autocomplete="off" on the forms spares the flash of the restored values). */
  window.addEventListener("pageshow", function () {
    for (const form of document.querySelectorAll('form[method="get"]')) form.reset();
  });

  const T = (window.Titan = {});

  /* The session's write key (master/auth/sessions.py): what a change sends besides the
   * cookie (X-CSRF-Token). The browser sends the cookie to every port of the host — a job's
   * service, another user's dev server — so no page a cookie can fetch carries the key: only
   * the sign-in reply does (<meta name="titan-write-key">, then on to where the person was
   * going). It is kept in localStorage, which belongs to this origin alone (scheme, host and
   * port), is shared by every tab, and lasts as the cookie does; read at each use, so a
   * sign-in in another tab serves them all. */
  const WRITE_KEY = "titan-write-key";
  T.writeKey = function () {
    try { return localStorage.getItem(WRITE_KEY) || ""; } catch (e) { return ""; }
  };
  const handed = meta("titan-write-key");
  if (handed) {
    try { localStorage.setItem(WRITE_KEY, handed); } catch (e) { /* storage off: read-only */ }
    location.replace(document.getElementById("signed-in-next").getAttribute("href"));
  }
  /* Without the key (site data cleared, storage off) the session reads and changes nothing:
   * the header says so, with the way out, rather than each button failing on its own. */
  /* Signed out, /runs/x#determinism was sent to /login?next=/runs/x, the browser keeping the
   * #determinism on the sign-in page's address; its form's POST drops it: put it in next. */
  const loginForm = document.body.dataset.page === "login" ? document.querySelector(".login form") : null;
  if (loginForm) {
    loginForm.addEventListener("submit", () => {
      const next = loginForm.elements.namedItem("next");
      if (next && location.hash && !next.value.includes("#")) next.value += location.hash;
    });
  }
  T.needsKey = function () {
    const link = document.getElementById("rekey");
    if (!link) return;
    link.href = "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
    link.hidden = false;
  };
  function checkKey() {
    const link = document.getElementById("rekey");
    if (!link) return;
    if (T.writeKey()) link.hidden = true;
    else T.needsKey();
  }
  checkKey();
  window.addEventListener("storage", (e) => { if (e.key === WRITE_KEY || e.key === null) checkKey(); });
  const signOut = document.querySelector("form.logout");
  if (signOut) {
    signOut.addEventListener("submit", (e) => {
      const key = T.writeKey();
      if (!key) {
        e.preventDefault();
        T.needsKey();
        T.toast("This browser holds no write key for this session: sign in again, then sign out.", "error");
        return;
      }
      signOut.elements.csrf_token.value = key;
      try { localStorage.removeItem(WRITE_KEY); } catch (err) { /* nothing kept */ }
    });
  }
  T.role = meta("titan-role");
  T.canOperate = T.role === "admin" || T.role === "operator";
  T.TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT",
                        "APPROVED", "REJECTED", "EXPIRED"]);
  T.ACTIVE = new Set(["PENDING", "READY", "RUNNING", "WAITING_APPROVAL"]);
  T.RETRYABLE = new Set(["FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT", "REJECTED", "EXPIRED"]);

  /* el("a", {class: "x", href: "/", dataset: {id: 3}}, "text", childNode) */
  T.el = function (tag, attrs) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = dv;
      else if (k === "hidden") node.hidden = true;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  };

  /* A count and its noun: "1 action", "1,204 actions" (render.plural, the templates' filter). */
  T.plural = function (n, word) {
    return (n || 0).toLocaleString("en-US") + " " + word + (n === 1 ? "" : "s");
  };

  /* Text-direction controls in what people typed (an agent id, a task's instructions, a DAG
   * or action name): an embedding, override or isolate (U+202A-U+202E, U+2066-U+2069)
   * reorders the text after it, so 'pay \u202eevil' read "pay live". Wherever such text is
   * shown — by the server's templates or by a page's script, now or later — the page shows
   * each control as a visible mark instead ("pay [U+202E]evil"): in every text node and
   * tooltip, never in a form's value or a data attribute (what is sent back stays exact).
   * style.css isolates every element besides, so right-to-left letters in one name cannot
   * reorder the text around it. */
  const BIDI = /[\u202A-\u202E\u2066-\u2069]/g;
  const HAS_BIDI = /[\u202A-\u202E\u2066-\u2069]/;
  const SKIP = new Set(["SCRIPT", "STYLE", "TEXTAREA"]);
  T.showControls = (text) => text.replace(BIDI, (c) => "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]");
  function showIn(node) {
    if (node.nodeType === Node.TEXT_NODE) {
      if (HAS_BIDI.test(node.data) && !(node.parentNode && SKIP.has(node.parentNode.nodeName))) {
        node.data = T.showControls(node.data);
      }
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE || SKIP.has(node.nodeName)) return;
    if (node.title && HAS_BIDI.test(node.title)) node.title = T.showControls(node.title);
    if (!HAS_BIDI.test(node.innerHTML)) return;  // its text and its descendants' titles
    for (const el of node.querySelectorAll("[title]")) {
      if (HAS_BIDI.test(el.title)) el.title = T.showControls(el.title);
    }
    const walk = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    const found = [];
    while (walk.nextNode()) if (HAS_BIDI.test(walk.currentNode.data)) found.push(walk.currentNode);
    for (const text of found) showIn(text);
  }
  showIn(document.documentElement);
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.type === "childList") c.addedNodes.forEach(showIn);
      else showIn(c.target);
    }
  }).observe(document.documentElement, { childList: true, subtree: true, characterData: true,
                                         attributes: true, attributeFilter: ["title"] });

  T.signIn = function () {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
  };

  /* fetch(), with a request that got no answer at all (the master stopped or unreachable)
   * said in words rather than as the browser's "Failed to fetch": err.offline is true. */
  T.OFFLINE = "the master is not answering";
  T.fetch = async function (url, init) {
    try {
      return await fetch(url, init);
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      const err = new Error(T.OFFLINE);
      err.offline = true;
      err.status = 0;
      throw err;
    }
  };

  /* What could not be loaded, in an error box with a Retry button that calls `retry`. */
  T.failure = function (what, err, retry) {
    const box = T.el("div", { class: "error-box load-failed", role: "alert" },
      T.el("span", { class: "failure-text", text: (what ? what + ": " : "") + err.message }));
    if (retry) {
      const again = T.el("button", { type: "button", class: "retry", text: "Retry" });
      again.addEventListener("click", retry);
      box.append(" ", again);
    }
    return box;
  };

  /* A JSON call to the API with the session cookie (and the write key when it changes
   * something). Rejects with the API's error message (the error's `details` on err.details). */
  T.api = async function (method, url, body) {
    const headers = { Accept: "application/json" };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = T.writeKey();
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await T.fetch(url, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401) T.signIn();
    if (r.status === 403 && data && data.error && data.error.code === "csrf_failed") T.needsKey();
    if (!r.ok) {
      const err = new Error(data && data.error ? data.error.message : r.status + " " + r.statusText);
      err.status = r.status;
      err.details = data && data.error ? data.error.details || {} : {};
      throw err;
    }
    return data;
  };
  T.getJSON = (url) => T.api("GET", url);

  let toastTimer = null;
  T.toast = function (message, kind) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.dataset.kind = kind || "info";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 8000 : 3000);
  };

  /* Run fn at most once per `ms` (the last call wins): bursts of events cost one refetch. */
  T.throttle = function (fn, ms) {
    let last = 0, timer = null;
    return function () {
      if (timer) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    };
  };

  /* -- time and sizes (the same wording as the server's filters) ------------------------ */
  T.ago = function (ts) {
    if (ts === null || ts === undefined) return "—";
    let delta = Date.now() / 1000 - ts;
    const future = delta < 0;
    delta = Math.abs(delta);
    if (delta < 5) return "just now";
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
      if (delta >= size) {
        const text = Math.floor(delta / size) + " " + unit;
        return future ? "in " + text : text + " ago";
      }
    }
    return "just now";
  };
  T.absolute = (ts) => new Date(ts * 1000).toLocaleString();
  T.duration = function (s) {
    if (s === null || s === undefined) return "—";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  };
  T.size = function (n) {
    if (n === null || n === undefined) return "—";
    let v = n;
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (v < 1024 || unit === "GiB") return unit === "B" ? v + " B" : v.toFixed(1) + " " + unit;
      v /= 1024;
    }
    return n + " B";
  };
  T.timeEl = function (ts) {
    if (ts === null || ts === undefined) return T.el("span", { class: "muted", text: "—" });
    return T.el("time", { datetime: new Date(ts * 1000).toISOString(), title: T.absolute(ts),
                          text: T.ago(ts) });
  };
  /* Keep every <time datetime> relative ("12 s ago") and its hover text in local time.
   * One timer for the page, every second as the durations tick: every 10 s, a card read
   * "DURATION 21.1 s" beside "STARTED 13 s ago". Only a text that changed is written, so a
   * time past its first minute is touched once a minute. */
  const localised = new WeakSet();  // <time>s whose hover text is already local
  T.refreshTimes = function (root) {
    for (const t of (root || document).querySelectorAll("time[datetime]")) {
      const ms = Date.parse(t.getAttribute("datetime"));
      if (isNaN(ms)) continue;
      const text = T.ago(ms / 1000);
      if (t.textContent !== text) t.textContent = text;
      if (!localised.has(t)) { t.title = T.absolute(ms / 1000); localised.add(t); }
    }
  };
  document.addEventListener("DOMContentLoaded", () => T.refreshTimes());
  setInterval(() => { if (!document.hidden) T.refreshTimes(); }, 1000);  // rewording only: nothing is fetched

  /* -- the live connection ---------------------------------------------------------------
   * Titan.live({types: [...], dag: id, job: id, onEvent(msg), onResync(first)}) connects,
   * reconnects with backoff (and at once when the socket goes silent past the master's
   * pings, or the browser comes back online), and calls onResync on each (re)connect and on
   * {"type":"resync"}: a page left open for days still shows the truth.
   * Returns {setJob(id)}: moves the log subscription on the open socket (and for reconnects).
   */
  T.live = function (opts) {
    const indicator = document.getElementById("live");
    const label = indicator ? indicator.querySelector(".live-label") : null;
    let ws = null, job = opts.job === undefined ? null : opts.job;
    let delay = 500, first = true, retry = null;
    // The master pings after `ping` quiet seconds (its hello says how many): hearing nothing
    // for 2.5 times that means the socket died without a close (a laptop asleep, a proxy or
    // NAT that dropped the connection), which no onclose would ever report.
    let pingEvery = 20, lastHeard = Date.now();

    function show(state, text) {
      if (!indicator) return;
      indicator.dataset.state = state;
      indicator.title = "Live updates: " + text;
      if (label) label.textContent = text;
    }

    function url() {
      const p = new URLSearchParams();
      if (opts.types) p.set("types", opts.types.join(","));
      if (opts.dag !== undefined && opts.dag !== null) p.set("dag", opts.dag);
      if (opts.dagName) p.set("dag_name", opts.dagName);  // its other runs' dag_updated too
      if (opts.run) p.set("run", opts.run);
      if (job !== null) p.set("job", job);
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
        "/api/v1/events?" + p.toString();
    }

    function reconnectSoon() {
      clearTimeout(retry);
      retry = setTimeout(connect, delay * (0.75 + Math.random() * 0.5));
      delay = Math.min(delay * 2, 15000);
    }

    /* Drop a socket that went silent and start over at once (its close may never come). */
    function abandon(why) {
      const sock = ws;
      if (!sock) return;
      ws = null;
      sock.onclose = null;
      sock.onmessage = null;
      try { sock.close(4000, why); } catch (err) { /* already closing */ }
      show("closed", "offline — reconnecting");
      delay = 500;
      reconnectSoon();
    }

    setInterval(() => {
      if (ws && ws.readyState === WebSocket.OPEN && Date.now() - lastHeard > pingEvery * 2500) {
        abandon("silent");
      }
    }, 1000);
    // Back from sleep or offline: do not wait for the backoff or the silence to notice.
    window.addEventListener("online", () => {
      if (!ws) { delay = 500; clearTimeout(retry); connect(); }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && ws && Date.now() - lastHeard > pingEvery * 2500) {
        abandon("stale");
      }
    });

    function connect() {
      clearTimeout(retry);
      show("closed", "connecting…");
      const asked = job;  // the log subscription this socket's address carries
      const sock = (ws = new WebSocket(url()));
      lastHeard = Date.now();
      sock.onmessage = (e) => {
        lastHeard = Date.now();
        let msg;
        try { msg = JSON.parse(e.data); } catch (err) { return; }
        if (msg.type === "ping") return;
        if (msg.type === "hello") {
          if (msg.ping > 0) pingEvery = msg.ping;
          // setJob while the socket was connecting (a panel opened from #job=<id>) could not
          // send: follow that job now, or its log never moves.
          if (job !== asked) sock.send(JSON.stringify({ job: job }));
          delay = 500;
          show("open", "live");
          const wasFirst = first;
          first = false;
          if (opts.onResync) opts.onResync(wasFirst);
        } else if (msg.type === "resync") {
          if (opts.onResync) opts.onResync(false);
        } else if (opts.onEvent) {
          opts.onEvent(msg);
        }
      };
      sock.onclose = (e) => {
        if (ws === sock) ws = null;
        // The master's own refusals (docs/api.md): signed out, or a request it will never
        // accept. Reconnecting would only repeat them.
        if (e.code === 4401) return T.signIn();
        if (e.code === 4400 || e.code === 4403) return show("closed", "refused: " + e.reason);
        show("closed", "offline — reconnecting");
        reconnectSoon();
      };
    }

    connect();
    return {
      setJob(id) {
        job = id === undefined ? null : id;
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ job: job }));
      },
    };
  };

  /* Replace a server-rendered region with its fresh copy from the same page's HTML (or from
   * the page at `url`: the Data Explorer's task modal shows a task page's region): the
   * markup stays the templates' own, with no second renderer in JS. <details> left open
   * stay open. Resolves to whether the region was replaced; `failed`, if given, is told the
   * master's reason when it refused the page (its error page's words: "task 'x' has no run
   * 'y'"). */
  async function reasonOf(r) {
    const said = await r.text().catch(() => "");
    const box = new DOMParser().parseFromString(said, "text/html").querySelector(".error-box");
    return (box && box.textContent.trim()) || "the master answered HTTP " + r.status;
  }
  const swaps = {};
  T.swapRegion = async function (id, mark, url, failed) {
    const ticket = (swaps[id] = (swaps[id] || 0) + 1);  // overlapping fetches: newest wins
    const r = await T.fetch(url || location.pathname + location.search,
                          { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (r.redirected && new URL(r.url).pathname === "/login") { T.signIn(); return false; }
    if (!r.ok) {
      if (failed && ticket === swaps[id]) failed(await reasonOf(r));
      return false;
    }
    const text = await r.text();
    if (ticket !== swaps[id]) return false;
    const doc = new DOMParser().parseFromString(text, "text/html");
    const fresh = doc.getElementById(id), old = document.getElementById(id);
    if (!fresh || !old) return false;
    const open = new Set([...old.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
    for (const d of fresh.querySelectorAll("details[data-key]")) if (open.has(d.dataset.key)) d.open = true;
    if (mark) mark(fresh);
    old.replaceWith(document.adoptNode(fresh));
    T.refreshTimes(fresh);
    return true;
  };
})();
