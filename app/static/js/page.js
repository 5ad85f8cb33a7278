// Small page behaviours: times in the reader's own time zone, and the post box's characters left.
(function () {
  "use strict";

  var FORMAT = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };

  // The server writes UTC into <time datetime>; the reader sees their local time, with the date.
  function localizeTime(node) {
    var when = new Date(node.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    node.textContent = when.toLocaleString(undefined, FORMAT);
    node.title = when.toISOString().replace(/\.\d+Z$/, "Z").replace("T", " ") + " UTC";
  }

  function localize(root) { (root || document).querySelectorAll("time[data-local-time]").forEach(localizeTime); }

  // Code points, as the server counts (Python's len): an emoji is one character, not two UTF-16 units.
  function characters(text) { return Array.from(text.replace(/\r\n/g, "\n")).length; }

  function counter(box) {
    var limit = parseInt(box.getAttribute("data-max-chars"), 10);
    var out = document.createElement("div");
    out.className = "form-text post-counter";
    out.id = box.id + "-left";
    out.setAttribute("aria-live", "polite");
    box.setAttribute("aria-describedby", ((box.getAttribute("aria-describedby") || "") + " " + out.id).trim());
    box.insertAdjacentElement("afterend", out);
    function update() {
      var left = limit - characters(box.value);
      var plural = function (n) { return n === 1 ? " character" : " characters"; };
      out.textContent = left >= 0 ? left + plural(left) + " left"
        : (-left) + plural(-left) + " too many (at most " + limit + ")";
      out.classList.toggle("text-danger", left < 0);
      box.classList.toggle("is-invalid", left < 0);
    }
    box.addEventListener("input", update);
    update();
  }

  localize(document);
  document.querySelectorAll("textarea[data-max-chars]").forEach(counter);
  window.MicroblogPage = { localize: localize, localizeTime: localizeTime, characters: characters };
})();
