// Where the browser renders progress: every `task_progress` event the server pushes updates the
// bars, status texts and buttons of that task on this page. The page never polls: on (re)connect
// the server sends a snapshot of the user's current tasks, so a late or reconnected page is current.
// Every event goes through onProgress(): filter or reorder events there, in one place.
// Words come from the payload (description, done_description, noun, ready_title, retry_url), so a new
// kind of task needs no change here.
(function () {
  "use strict";

  var STATUS_BAR_CLASS = { finished: "bg-success", failed: "bg-danger", canceled: "bg-secondary" };
  var ACTIVE = { queued: true, started: true };
  var SLOW_PHASE_MS = 1000; // a phase shorter than this is not worth a message: it would only flash by
  var csrfToken = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var seen = {}; // task_id -> highest progress shown (progress never goes backwards)
  var ended = {}; // task_id -> true once a terminal event arrived
  var known = {}; // task_id -> the last status this page showed (server-rendered or live)
  var latest = {}; // task_id -> the last payload
  var phase = {}; // task_id -> {message, since}: when the current "started" message first arrived
  var dismissed = {}; // task_id -> true once the user closed its alert
  var page = window.MicroblogPage || { localizeTime: function () {} };
  var t_ = page.t || function (key) { return key; }; // the page's words (page.js): English key -> this language

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function each(selector, fn) { document.querySelectorAll(selector).forEach(fn); }

  // --- words --------------------------------------------------------------------------------------

  function fmt(n) { return page.number ? page.number(n) : Number(n).toLocaleString("en-US"); }

  function fileSize(bytes) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"], value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? Math.floor(value) + " bytes" : value.toFixed(1) + " " + units[unit];
  }

  function duration(seconds) {
    if (seconds < 10) return seconds.toFixed(1) + " s";
    var whole = Math.round(seconds);
    if (whole < 60) return whole + " s";
    var minutes = Math.floor(whole / 60), secs = whole % 60;
    if (minutes < 60) return secs ? minutes + " min " + secs + " s" : minutes + " min";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function timeLeft(seconds) {
    if (seconds < 60) return t_("about {seconds} s left", { seconds: Math.max(1, seconds) });
    return t_("about {minutes} min left", { minutes: Math.round(seconds / 60) });
  }

  // "21% · 412,000 of 2,000,000 posts · 180,000/s · about 9 s left"
  function countsText(t, progress) {
    var parts = [progress + "%"];
    if (t.total != null && t.current != null) {
      parts.push(t_("{current} of {total} {noun}", { current: fmt(t.current), total: fmt(t.total), noun: t.noun || t_("items") }));
    }
    if (t.rate) parts.push(fmt(t.rate) + "/s");
    if (t.eta_seconds != null) parts.push(timeLeft(t.eta_seconds));
    return parts.join(" · ");
  }

  function runningText(t, progress) {
    var p = phase[t.task_id];
    if (t.message && p && p.message === t.message && Date.now() - p.since >= SLOW_PHASE_MS) return t.message;
    if (t.total != null) return countsText(t, progress);
    return t_("Starting… {percent}%", { percent: progress });
  }

  function doneText(t) {
    if (t.message) return t_("Done. {message}", { message: t.message });
    if (t.delivery === "attached") return t_("Done — emailed to you");
    if (t.delivery === "linked") return t_("Done — emailed you a link");
    return t_("Done");
  }

  function statusText(t, progress) {
    if (t.status === "queued") return t_("Waiting for a worker…");
    if (t.status === "started") return runningText(t, progress);
    if (t.status === "failed") return t_("Failed: {reason}", { reason: t.message || t_("unknown reason") });
    if (t.status === "canceled") return t_("Canceled");
    return doneText(t);
  }

  function titleOf(t) {
    return t.status === "finished" ? (t.done_description || t.description) : t.description;
  }

  // What a screen reader hears: status changes only, never a percent.
  function announcement(t) {
    if (t.status === "started") return t_("{task}: started.", { task: t.description });
    if (t.status === "finished") return t_("{task}: {status}.", { task: titleOf(t), status: doneText(t) });
    if (t.status === "failed") return t_("{task} failed: {reason}", { task: t.description, reason: t.message || t_("unknown reason") });
    if (t.status === "canceled") return t_("{task}: canceled.", { task: t.description });
    return "";
  }

  // --- rendering ------------------------------------------------------------------------------------

  function postButton(action, label, cls, extra) {
    var form = el("form", { action: action, method: "post", "class": "d-inline" });
    form.appendChild(el("input", { type: "hidden", name: "csrf_token", value: csrfToken }));
    form.appendChild(el("input", { type: "hidden", name: "next", value: window.location.pathname }));
    form.appendChild(el("button", Object.assign({ type: "submit", "class": "btn btn-sm " + cls }, extra || {}), label));
    return form;
  }

  // Kinds sharing a lane (the export and the import of posts) never run together for one user.
  function laneOf(t) { return t.lane || t.name; }

  function laneIsRunning(lane) {
    return Object.keys(latest).some(function (id) { return laneOf(latest[id]) === lane && ACTIVE[latest[id].status]; });
  }

  function renderStatus(node, t, progress) {
    node.textContent = statusText(t, progress);
    if (t.status === "finished" && t.download_url) {
      node.appendChild(document.createTextNode(" · "));
      node.appendChild(el("a", { href: t.download_url, "data-download": t.task_id }, t_("Download")));
    }
  }

  function renderActions(node, t) {
    node.textContent = "";
    if (ACTIVE[t.status]) {
      node.appendChild(postButton("/tasks/" + t.task_id + "/cancel", t_("Cancel"), "btn-outline-danger"));
    } else if ((t.status === "failed" || t.status === "canceled") && t.retry_url && !laneIsRunning(laneOf(t))) {
      if (t.retry_method === "get") {  // a kind launched with a file: its retry opens the form again
        node.appendChild(el("a", { href: t.retry_url, "class": "btn btn-sm btn-outline-primary", "data-retry-kind": t.name },
                            t_("Try again")));
      } else {
        node.appendChild(postButton(t.retry_url, t_("Try again"), "btn-outline-primary", { "data-retry-kind": t.name }));
      }
    }
  }

  function renderDetails(node, t) {
    node.textContent = "";
    var parts = [];
    if (t.status === "finished" && t.total != null) parts.push(fmt(t.total) + " " + (t.noun || t_("items")));
    if (t.result_bytes) parts.push(fileSize(t.result_bytes));
    if (t.started_at && t.finished_at) {
      parts.push(t_("took {time}", { time: duration(Math.max(0, (Date.parse(t.finished_at) - Date.parse(t.started_at)) / 1000)) }));
    }
    node.textContent = parts.join(" · ");
    if (t.expires_at && t.download_url) {
      node.appendChild(document.createTextNode((parts.length ? " · " : "") + t_("downloadable until") + " "));
      node.appendChild(timeElement(t.expires_at));
    }
  }

  function timeElement(iso) {
    var node = el("time", { datetime: iso, "data-local-time": "" }, iso);
    page.localizeTime(node);
    return node;
  }

  function renderTime(node, iso) {
    node.textContent = iso ? t_("ended") + " " : "";
    if (iso) node.appendChild(timeElement(iso));
  }

  function setWidth(inner, progress) { inner.style.width = progress + "%"; }

  function renderBar(bar, t, progress) {
    bar.setAttribute("aria-valuenow", String(progress));
    bar.setAttribute("data-status", t.status);
    bar.setAttribute("aria-label", titleOf(t));
    var inner = bar.querySelector(".progress-bar");
    setWidth(inner, progress);
    inner.classList.remove("bg-success", "bg-danger", "bg-secondary");
    if (STATUS_BAR_CLASS[t.status]) inner.classList.add(STATUS_BAR_CLASS[t.status]);
  }

  function newBar(t) {
    var bar = el("div", { "class": "progress task-progress", role: "progressbar", "aria-label": t.description,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "data-task-id": t.task_id });
    bar.appendChild(el("div", { "class": "progress-bar" }));
    return bar;
  }

  // A task started in another tab (or before a reconnect) gets an alert of its own.
  function ensureAlert(t) {
    var container = document.getElementById("task-alerts");
    if (!container || dismissed[t.task_id] || container.querySelector('[data-task-alert="' + t.task_id + '"]')) return;
    if (!ACTIVE[t.status] && document.querySelector('[data-task-id="' + t.task_id + '"]')) return;
    if (!ACTIVE[t.status] && !seen.hasOwnProperty(t.task_id)) return; // old news: /tasks shows it
    var alert = el("div", { "class": "alert alert-info alert-dismissible task-alert", "data-task-alert": t.task_id });
    var head = el("div", { "class": "d-flex flex-wrap justify-content-between align-items-center gap-2 mb-2" });
    var title = el("span", { "class": "task-head" });
    var strong = el("strong");
    strong.appendChild(el("span", { "data-task-title": t.task_id }, titleOf(t)));
    title.appendChild(strong);
    title.appendChild(el("span", { "class": "task-status ms-1", "data-task-status": t.task_id }));
    head.appendChild(title);
    head.appendChild(el("span", { "class": "task-actions", "data-task-actions": t.task_id }));
    alert.appendChild(head);
    alert.appendChild(newBar(t));
    alert.appendChild(el("button", { type: "button", "class": "btn-close", "data-bs-dismiss": "alert", "aria-label": t_("Close") }));
    container.appendChild(alert);
  }

  // On /tasks a task launched elsewhere appears at the top of the history (same cells as history.html).
  function ensureHistoryRow(t) {
    var table = document.getElementById("task-history");
    if (!table || table.querySelector('[data-task-row="' + t.task_id + '"]')) return;
    var empty = table.querySelector(".empty-row");
    if (empty) empty.remove();
    var row = el("tr", { "data-task-row": t.task_id });
    var first = el("td");
    first.appendChild(el("span", { "data-task-title": t.task_id }, titleOf(t)));
    if (t.created_at) {
      first.appendChild(el("br"));
      var small = el("small", { "class": "text-muted" }, t_("launched") + " ");
      small.appendChild(timeElement(t.created_at));
      first.appendChild(small);
    }
    row.appendChild(first);
    var barCell = el("td", { "class": "task-bar-cell" });
    barCell.appendChild(newBar(t));
    row.appendChild(barCell);
    row.appendChild(el("td", { "class": "task-status", "data-task-status": t.task_id }));
    var details = el("td");
    details.appendChild(el("span", { "class": "task-details", "data-task-details": t.task_id }));
    row.appendChild(details);
    row.appendChild(el("td", { "data-task-finished": t.task_id }));
    var actions = el("td");
    actions.appendChild(el("span", { "class": "task-actions", "data-task-actions": t.task_id }));
    row.appendChild(actions);
    table.querySelector("tbody").prepend(row);
  }

  // Ordering, kept apart from the rendering: every event carries its task row's `seq` (see
  // app/progress.py). One older than the newest this page applied for that task (a snapshot that
  // raced a live event, a late event from another process) is dropped; a repeat is harmless.
  var newestSeq = {}; // task_id -> highest seq applied
  function isStale(t) {
    if (typeof t.seq !== "number") return false;
    if (newestSeq.hasOwnProperty(t.task_id) && t.seq < newestSeq[t.task_id]) return true;
    newestSeq[t.task_id] = t.seq;
    return false;
  }

  function renderTask(t) {
    var id = t.task_id, progress = seen[id] || 0;
    each('[data-task-id="' + id + '"]', function (bar) { renderBar(bar, t, progress); });
    each('[data-task-title="' + id + '"]', function (n) { n.textContent = titleOf(t); });
    each('[data-task-status="' + id + '"]', function (n) { renderStatus(n, t, progress); });
    each('[data-task-actions="' + id + '"]', function (n) { renderActions(n, t); });
    each('[data-task-details="' + id + '"]', function (n) { renderDetails(n, t); });
    each('[data-task-finished="' + id + '"]', function (n) { renderTime(n, t.finished_at); });
    each('[data-task-alert="' + id + '"]', function (n) {
      n.classList.toggle("alert-info", !!ACTIVE[t.status]);
      n.classList.toggle("alert-success", t.status === "finished");
      n.classList.toggle("alert-danger", t.status === "failed");
      n.classList.toggle("alert-secondary", t.status === "canceled");
    });
    var lane = laneOf(t), running = laneIsRunning(lane);
    each('[data-lane-form="' + lane + '"]', function (n) { n.hidden = running; });
    each('[data-lane-busy="' + lane + '"]', function (n) { n.hidden = !running; });
    if (running && ACTIVE[t.status]) {
      each('[data-lane-busy-description="' + lane + '"]', function (n) { n.textContent = t.description; });
    }
  }

  // A slow phase's message shows once it has lasted SLOW_PHASE_MS; a quick one never shows.
  function trackPhase(t) {
    var p = phase[t.task_id];
    if (t.status !== "started" || !t.message) { delete phase[t.task_id]; return; }
    if (p && p.message === t.message) return;
    phase[t.task_id] = { message: t.message, since: Date.now() };
    setTimeout(function () {
      var now = latest[t.task_id];
      if (now && now.status === "started" && now.message === t.message) renderTask(now);
    }, SLOW_PHASE_MS);
  }

  // --- news: what changed since this page last showed the task ------------------------------------

  function announce(text) {
    var region = document.getElementById("task-announcer");
    if (region && text) region.textContent = text;
  }

  function onStatusChange(t, before) {
    announce(announcement(t));
    var liveEnd = !ACTIVE[t.status] && ACTIVE[before];
    // The flash ("Your export has started", "…already in progress") now contradicts the live state.
    if (liveEnd || (ACTIVE[t.status] && before === undefined)) each("[data-task-flash]", function (n) { n.remove(); });
    if (ACTIVE[t.status]) {
      // A retry runs: the "Try again" of its earlier attempts has done its job.
      each('[data-retry-kind="' + t.name + '"]', function (b) { b.closest("form").remove(); });
    }
    if (liveEnd) tellWhereverYouAre(t);
    updateNotifyOffer();
  }

  // --- done wherever you are: tab title, favicon, desktop notification -----------------------------

  var favicon = document.getElementById("favicon");
  var restTitle = null, restIcon = null;

  function newsTitle(t) {
    if (t.status === "finished") return "✓ " + (t.ready_title || titleOf(t)) + " · Microblog";
    if (t.status === "failed") return "✗ " + t_("{task} failed", { task: t.description }) + " · Microblog";
    return null;
  }

  function tellWhereverYouAre(t) {
    var title = newsTitle(t);
    if (!title || document.visibilityState !== "hidden") return;
    if (restTitle === null) { restTitle = document.title; restIcon = favicon && favicon.getAttribute("href"); }
    document.title = title;
    if (favicon) favicon.setAttribute("href", favicon.getAttribute("data-done-href"));
    if ("Notification" in window && Notification.permission === "granted") {
      var note = new Notification(title.replace(/ · Microblog$/, ""), { body: statusText(t, 100), tag: t.task_id });
      note.onclick = function () { window.focus(); window.location.assign("/tasks"); note.close(); };
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || restTitle === null) return;
    document.title = restTitle;
    if (favicon && restIcon) favicon.setAttribute("href", restIcon);
    restTitle = restIcon = null;
  });

  // Permission is asked from this button only, never on load.
  function updateNotifyOffer() {
    var offer = document.getElementById("notify-offer");
    if (!offer) return;
    var relevant = document.querySelector("[data-task-alert]") || document.getElementById("task-history");
    offer.hidden = !("Notification" in window) || Notification.permission !== "default" || !relevant;
  }

  var notifyButton = document.getElementById("notify-button");
  if (notifyButton) {
    notifyButton.addEventListener("click", function () {
      Promise.resolve(Notification.requestPermission()).then(updateNotifyOffer);
    });
  }

  // --- the one entry point for events --------------------------------------------------------------

  function onProgress(t) {
    if (isStale(t)) return;
    // An ended task stays ended, unless a newer state of its row says it runs again (an operator
    // reran it): a late event of the earlier run carries an older seq and was dropped just above.
    // Only an event without a seq (an older publisher) cannot tell, and never reopens a bar.
    if (ended[t.task_id] && ACTIVE[t.status] && typeof t.seq !== "number") return;
    if (ACTIVE[t.status]) delete ended[t.task_id]; else ended[t.task_id] = true;
    var before = known[t.task_id];
    latest[t.task_id] = t;
    trackPhase(t);
    ensureAlert(t);
    ensureHistoryRow(t);
    seen[t.task_id] = Math.max(t.progress, seen[t.task_id] || 0);
    renderTask(t);
    known[t.task_id] = t.status;
    if (before !== t.status) onStatusChange(t, before);
    document.dispatchEvent(new CustomEvent("task-progress", { detail: t }));
  }

  // Bars the server rendered are the floor for later events of the same task.
  each("[data-task-id]", function (bar) {
    var id = bar.getAttribute("data-task-id"), status = bar.getAttribute("data-status");
    var seq = parseInt(bar.getAttribute("data-seq"), 10);
    seen[id] = Math.max(seen[id] || 0, parseInt(bar.getAttribute("aria-valuenow"), 10) || 0);
    // The row state the server rendered: events older than it are dropped like any stale one.
    if (!isNaN(seq)) newestSeq[id] = Math.max(newestSeq[id] || 0, seq);
    if (status) known[id] = status;
    if (!ACTIVE[status]) ended[id] = true;
  });
  // The server gives widths as data attributes (a strict CSP forbids inline styles).
  each(".progress-bar[data-width]", function (inner) { setWidth(inner, parseInt(inner.getAttribute("data-width"), 10) || 0); });
  document.addEventListener("closed.bs.alert", function (e) {
    var id = e.target.getAttribute && e.target.getAttribute("data-task-alert");
    if (id) dismissed[id] = true;
  });
  updateNotifyOffer();

  if (!document.body.hasAttribute("data-live-tasks") || typeof io === "undefined") return;
  var liveStatus = document.getElementById("live-status");
  function setLive(up) {
    document.body.setAttribute("data-socket", up ? "connected" : "disconnected");
    if (liveStatus) liveStatus.hidden = up; // a frozen bar must not look alive
  }
  // Websocket only: any server behind a load balancer can take it, no sticky sessions needed.
  var socket = io({ transports: ["websocket"] });
  socket.on("task_progress", onProgress);
  socket.on("connect", function () { setLive(true); });
  socket.on("disconnect", function () { setLive(false); });
  socket.on("connect_error", function () { setLive(false); });
  window.microblogSocket = socket;
})();
