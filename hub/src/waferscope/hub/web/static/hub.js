// waferscope hub: keyboard shortcuts and the two fragments the wafer page loads on demand.
// Plain JavaScript, no library, no build step. The pages work without it (forms and links).
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");
  var pendingG = false;

  function typing(el) {
    return el && (el.tagName === "INPUT" && el.type !== "radio" || el.tagName === "TEXTAREA" ||
      el.tagName === "SELECT" || el.isContentEditable);
  }

  function load(target, url, method) {
    target.innerHTML = "<p class=\"muted\">Loading…</p>";
    return fetch(url, { method: method || "GET", credentials: "same-origin",
                        headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text().then(function (t) { return [r.ok, t]; }); })
      .then(function (res) {
        target.innerHTML = res[0] ? res[1] : "<p class=\"error\">Could not load (" + res[1].slice(0, 200) + ")</p>";
      })
      .catch(function (e) { target.innerHTML = "<p class=\"error\">" + e + "</p>"; });
  }

  // ---------------------------------------------------------------- lists
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.row[data-href]"));
  var cursor = -1;
  function select(i) {
    if (!rows.length) { return; }
    cursor = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("selected", k === cursor); });
    rows[cursor].scrollIntoView({ block: "nearest" });
  }
  rows.forEach(function (r, k) {
    r.addEventListener("click", function (ev) {
      if (ev.target.tagName !== "A") { window.location = r.getAttribute("data-href"); }
    });
  });

  // ---------------------------------------------------------------- wafer page
  var wafer = document.querySelector(".wafer[data-result-id]");
  var form = document.getElementById("review-form");
  var similar = document.getElementById("similar");
  if (similar) { load(similar, similar.getAttribute("data-src")); }
  var shapButton = document.getElementById("shap-button");
  function shap() {
    if (!shapButton) { return; }
    shapButton.disabled = true;
    load(document.getElementById("shap"), shapButton.getAttribute("data-src"))
      .then(function () { shapButton.disabled = false; });
  }
  if (shapButton) { shapButton.addEventListener("click", shap); }

  function choose(key) {
    if (!form) { return false; }
    var radio = form.querySelector("input[name=pattern][data-key='" + key + "']");
    if (radio) { radio.checked = true; radio.focus(); }
  }
  function confirmPrediction() {
    if (!form || !wafer) { return false; }
    var predicted = wafer.getAttribute("data-predicted");
    var radio = form.querySelector("input[name=pattern][value='" + predicted + "']");
    if (!radio) { return; }
    radio.checked = true;
    document.getElementById("root-cause").value = wafer.getAttribute("data-predicted-cause") || "";
    form.submit();
  }
  function focusField(id, selectAll) {
    var el = document.getElementById(id);
    if (!el) { return false; }
    el.focus();
    if (selectAll) { el.select(); }
  }

  // ---------------------------------------------------------------- keyboard
  // Which key does what comes from the page (<body data-shortcuts>, rendered from the hub's
  // shortcut list, which is also the help page): this script names actions, never keys.
  var actions = {
    "go": function (ev, arg) { window.location = arg; },
    "blur": function (ev) { if (!typing(ev.target)) { return false; } ev.target.blur(); },
    "row-next": function () { select(cursor + 1); },
    "row-previous": function () { select(cursor - 1); },
    "row-open": function () {
      if (cursor < 0) { return false; }
      window.location = rows[cursor].getAttribute("data-href");
    },
    "choose": function (ev) { return choose(ev.key); },
    "confirm": function () { return confirmPrediction(); },
    "save": function () { if (!form) { return false; } form.submit(); },
    "skip": function () {
      var skip = document.getElementById("skip-button");
      if (!skip) { return false; }
      skip.click();
    },
    "root-cause": function () { return focusField("root-cause", true); },
    "comment": function () { return focusField("comment", false); },
    "shap": function () { if (!shapButton) { return false; } shap(); },
    "next-wafer": function () {
      var next = document.getElementById("next-link");
      if (!next) { return false; }
      window.location = next.href;
    }
  };
  var table = {};
  try { table = JSON.parse(document.body.getAttribute("data-shortcuts") || "{}"); } catch (e) { table = {}; }
  var places = page === "wafer" ? ["wafer", "everywhere"] : rows.length ? ["lists", "everywhere"] : ["everywhere"];
  var prefixes = {};  // first keys of sequences ("g" of "g q")
  places.forEach(function (p) {
    Object.keys(table[p] || {}).forEach(function (k) {
      var parts = k.split(" ");
      if (parts.length > 1) { prefixes[parts[0]] = true; }
    });
  });
  var pending = null;

  function keyName(ev) {
    return (ev.ctrlKey ? "Control+" : "") + (ev.metaKey ? "Meta+" : "") + (ev.altKey ? "Alt+" : "") + ev.key;
  }
  function find(name, inField) {
    for (var i = 0; i < places.length; i++) {
      var hit = (table[places[i]] || {})[name];
      if (hit && (!inField || hit.fields)) { return hit; }
    }
    return null;
  }
  function run(hit, ev) {
    var colon = hit.action.indexOf(":");
    var name = colon < 0 ? hit.action : hit.action.slice(0, colon);
    var fn = actions[name];
    if (fn && fn(ev, colon < 0 ? "" : hit.action.slice(colon + 1)) !== false) { ev.preventDefault(); }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Shift" || ev.key === "Control" || ev.key === "Alt" || ev.key === "Meta") { return; }
    var name = keyName(ev);
    var inField = typing(ev.target);
    if (pending !== null) {
      name = pending + " " + name;
      pending = null;
    } else if (!inField && prefixes[name]) {
      pending = name;
      setTimeout(function () { pending = null; }, 1500);
      return;
    }
    var hit = find(name, inField);
    if (hit) { run(hit, ev); }
  });
})();
