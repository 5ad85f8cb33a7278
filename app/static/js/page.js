// Small page behaviours: times in the reader's own time zone, and the post box's characters left.
(function () {
  "use strict";

  var FORMAT = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  var LANG = document.documentElement.lang || "en";

  // The page's words for its scripts: <meta name="i18n"> holds English -> this page's language
  // (app/i18n.py JS_STRINGS; empty in English). A missing word falls back to the English key.
  var WORDS = (function () {
    var meta = document.querySelector('meta[name="i18n"]');
    try { return JSON.parse((meta && meta.content) || "{}"); } catch (e) { return {}; }
  })();

  function t(key, vars) {
    var text = Object.prototype.hasOwnProperty.call(WORDS, key) ? WORDS[key] : key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return vars && Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole;
    });
  }

  // Numbers as the page's language writes them ("2,000,000" in English), like the server's `thousands`.
  function number(n) { return Number(n).toLocaleString(LANG); }

  // The server writes UTC into <time datetime>; the reader sees their local time, with the date.
  function localizeTime(node) {
    var when = new Date(node.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    node.textContent = when.toLocaleString(LANG, FORMAT);
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
      if (left === 1) out.textContent = t("1 character left");
      else if (left >= 0) out.textContent = t("{count} characters left", { count: left });
      else if (left === -1) out.textContent = t("1 character too many (at most {limit})", { limit: limit });
      else out.textContent = t("{count} characters too many (at most {limit})", { count: -left, limit: limit });
      out.classList.toggle("text-danger", left < 0);
      box.classList.toggle("is-invalid", left < 0);
    }
    box.addEventListener("input", update);
    update();
  }

  localize(document);
  document.querySelectorAll("textarea[data-max-chars]").forEach(counter);
  window.MicroblogPage = { localize: localize, localizeTime: localizeTime, characters: characters, t: t, number: number };
})();
