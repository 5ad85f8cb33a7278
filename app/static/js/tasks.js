// Where the browser renders progress: every `task_progress` event the server pushes updates the
// bars, status texts and buttons of that task on this page. The page never polls: on (re)connect
// the server sends a snapshot of the user's current tasks, so a late or reconnected page is current.
(function () {
  "use strict";

  var STATUS_BAR_CLASS = { finished: "bg-success", failed: "bg-danger", canceled: "bg-secondary" };
  var ACTIVE = { queued: true, started: true };
  var csrfToken = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var seen = {}; // task_id -> highest progress shown (progress never goes backwards)
  var ended = {}; // task_id -> true once a terminal event arrived

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function postButton(action, label, cls) {
    var form = el("form", { action: action, method: "post", "class": "d-inline" });
    form.appendChild(el("input", { type: "hidden", name: "csrf_token", value: csrfToken }));
    form.appendChild(el("input", { type: "hidden", name: "next", value: window.location.pathname }));
    form.appendChild(el("button", { type: "submit", "class": "btn btn-sm " + cls }, label));
    return form;
  }

  function renderStatus(node, t) {
    node.textContent = "";
    if (t.status === "queued") node.textContent = "Waiting for a worker…";
    else if (t.status === "started") node.textContent = t.message || "Running…";
    else if (t.status === "failed") node.textContent = "Failed: " + (t.message || "unknown reason");
    else if (t.status === "canceled") node.textContent = "Canceled";
    else if (t.status === "finished") {
      node.textContent = "Done — " + (t.message || "emailed to you");
      if (t.download_url) {
        node.appendChild(document.createTextNode(" · "));
        node.appendChild(el("a", { href: t.download_url, "data-download": t.task_id }, "Download"));
      }
    }
  }

  function renderActions(node, t) {
    node.textContent = "";
    if (ACTIVE[t.status]) {
      node.appendChild(postButton("/tasks/" + t.task_id + "/cancel", "Cancel", "btn-outline-danger"));
    } else if ((t.status === "failed" || t.status === "canceled") && t.name === "export_posts") {
      node.appendChild(postButton("/export_posts", "Try again", "btn-outline-primary"));
    }
  }

  function renderBar(bar, t, progress) {
    bar.setAttribute("aria-valuenow", String(progress));
    bar.setAttribute("data-status", t.status);
    var inner = bar.querySelector(".progress-bar");
    inner.style.width = progress + "%";
    inner.textContent = progress + "%";
    inner.classList.remove("bg-success", "bg-danger", "bg-secondary");
    if (STATUS_BAR_CLASS[t.status]) inner.classList.add(STATUS_BAR_CLASS[t.status]);
  }

  function newBar(t) {
    var bar = el("div", { "class": "progress", role: "progressbar", "aria-label": t.description,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "data-task-id": t.task_id });
    bar.appendChild(el("div", { "class": "progress-bar" }, "0%"));
    return bar;
  }

  // A task started in another tab (or before a reconnect) gets an alert of its own.
  function ensureAlert(t) {
    var container = document.getElementById("task-alerts");
    if (!container || container.querySelector('[data-task-alert="' + t.task_id + '"]')) return;
    if (!ACTIVE[t.status] && document.querySelector('[data-task-id="' + t.task_id + '"]')) return;
    if (!ACTIVE[t.status] && !seen.hasOwnProperty(t.task_id)) return; // old news: /tasks shows it
    var alert = el("div", { "class": "alert alert-info task-alert", "data-task-alert": t.task_id });
    var head = el("div", { "class": "d-flex justify-content-between align-items-center mb-2" });
    var title = el("span");
    title.appendChild(el("strong", {}, t.description));
    title.appendChild(el("span", { "class": "task-status ms-2", "data-task-status": t.task_id }));
    head.appendChild(title);
    head.appendChild(el("span", { "class": "task-actions", "data-task-actions": t.task_id }));
    alert.appendChild(head);
    alert.appendChild(newBar(t));
    container.appendChild(alert);
  }

  // On /tasks a task launched elsewhere appears at the top of the history.
  function ensureHistoryRow(t) {
    var table = document.getElementById("task-history");
    if (!table || table.querySelector('[data-task-row="' + t.task_id + '"]')) return;
    var empty = table.querySelector(".empty-row");
    if (empty) empty.remove();
    var row = el("tr", { "data-task-row": t.task_id });
    row.appendChild(el("td", {}, t.description));
    var barCell = el("td", { "class": "w-25" });
    barCell.appendChild(newBar(t));
    row.appendChild(barCell);
    row.appendChild(el("td", { "class": "task-status", "data-task-status": t.task_id }));
    row.appendChild(el("td", { "data-task-started": t.task_id }));
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

  function timeOf(iso) { return iso ? iso.substring(11, 19) : ""; }

  function onProgress(t) {
    if (isStale(t)) return;
    // An ended task stays ended: a late event from another process must not reopen its bar.
    if (ended[t.task_id] && ACTIVE[t.status]) return;
    if (!ACTIVE[t.status]) ended[t.task_id] = true;
    var progress = Math.max(t.progress, seen[t.task_id] || 0);
    ensureAlert(t);
    ensureHistoryRow(t);
    seen[t.task_id] = progress;
    document.querySelectorAll('[data-task-id="' + t.task_id + '"]').forEach(function (bar) {
      renderBar(bar, t, progress);
    });
    document.querySelectorAll('[data-task-status="' + t.task_id + '"]').forEach(function (n) { renderStatus(n, t); });
    document.querySelectorAll('[data-task-actions="' + t.task_id + '"]').forEach(function (n) { renderActions(n, t); });
    document.querySelectorAll('[data-task-started="' + t.task_id + '"]').forEach(function (n) { n.textContent = timeOf(t.started_at); });
    document.querySelectorAll('[data-task-finished="' + t.task_id + '"]').forEach(function (n) { n.textContent = timeOf(t.finished_at); });
    document.querySelectorAll('[data-task-alert="' + t.task_id + '"]').forEach(function (n) {
      n.classList.toggle("alert-info", !!ACTIVE[t.status]);
      n.classList.toggle("alert-success", t.status === "finished");
      n.classList.toggle("alert-danger", t.status === "failed");
      n.classList.toggle("alert-secondary", t.status === "canceled");
    });
    if (t.name === "export_posts") {
      var form = document.getElementById("export-form");
      var busy = document.getElementById("export-in-progress");
      if (form) form.hidden = !!ACTIVE[t.status];
      if (busy) busy.hidden = !ACTIVE[t.status];
    }
    document.dispatchEvent(new CustomEvent("task-progress", { detail: t }));
  }

  // The server renders the width as data (a strict CSP forbids inline styles); CSSOM may set it.
  document.querySelectorAll(".progress-bar[data-width]").forEach(function (n) { n.style.width = n.getAttribute("data-width") + "%"; });
  // Bars the server rendered are the floor for later events of the same task.
  document.querySelectorAll("[data-task-id]").forEach(function (bar) {
    var id = bar.getAttribute("data-task-id");
    seen[id] = Math.max(seen[id] || 0, parseInt(bar.getAttribute("aria-valuenow"), 10) || 0);
    if (!ACTIVE[bar.getAttribute("data-status")]) ended[id] = true;
  });

  if (!document.body.hasAttribute("data-live-tasks") || typeof io === "undefined") return;
  // Websocket only: any server behind a load balancer can take it, no sticky sessions needed.
  var socket = io({ transports: ["websocket"] });
  socket.on("task_progress", onProgress);
  socket.on("connect", function () { document.body.setAttribute("data-socket", "connected"); });
  socket.on("disconnect", function () { document.body.setAttribute("data-socket", "disconnected"); });
  window.microblogSocket = socket;
})();
