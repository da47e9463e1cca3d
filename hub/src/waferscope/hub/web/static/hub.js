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
    if (!form) { return; }
    var radio = form.querySelector("input[name=pattern][data-key='" + key + "']");
    if (radio) { radio.checked = true; radio.focus(); }
  }
  function confirmPrediction() {
    if (!form || !wafer) { return; }
    var predicted = wafer.getAttribute("data-predicted");
    var radio = form.querySelector("input[name=pattern][value='" + predicted + "']");
    if (!radio) { return; }
    radio.checked = true;
    document.getElementById("root-cause").value = wafer.getAttribute("data-predicted-cause") || "";
    form.submit();
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) {
      if (form && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.submit(); }
      return;
    }
    if (typing(ev.target)) {
      if (ev.key === "Escape") { ev.target.blur(); }
      return;
    }
    if (pendingG) {
      pendingG = false;
      var go = { q: "/ui/queue", r: "/ui/results", a: "/ui/alerts", t: "/ui/trends", d: "/ui/devices" }[ev.key];
      if (go) { ev.preventDefault(); window.location = go; }
      return;
    }
    if (ev.key === "g") { pendingG = true; setTimeout(function () { pendingG = false; }, 1500); return; }
    if (ev.key === "?") { window.location = "/ui/help"; return; }
    if (page === "wafer") {
      if (/^[1-9]$/.test(ev.key)) { ev.preventDefault(); choose(ev.key); return; }
      if (ev.key === "c") { ev.preventDefault(); confirmPrediction(); return; }
      if (ev.key === "Enter" && form) { ev.preventDefault(); form.submit(); return; }
      if (ev.key === "s" && form) { ev.preventDefault(); document.getElementById("skip-button").click(); return; }
      if (ev.key === "r") { ev.preventDefault(); var rc = document.getElementById("root-cause"); if (rc) { rc.focus(); rc.select(); } return; }
      if (ev.key === "m") { ev.preventDefault(); var cm = document.getElementById("comment"); if (cm) { cm.focus(); } return; }
      if (ev.key === "x") { ev.preventDefault(); shap(); return; }
      if (ev.key === "n") { var nx = document.getElementById("next-link"); if (nx) { window.location = nx.href; } return; }
      return;
    }
    if (rows.length) {
      if (ev.key === "j" || ev.key === "ArrowDown") { ev.preventDefault(); select(cursor + 1); return; }
      if (ev.key === "k" || ev.key === "ArrowUp") { ev.preventDefault(); select(cursor - 1); return; }
      if ((ev.key === "Enter" || ev.key === "o") && cursor >= 0) {
        ev.preventDefault(); window.location = rows[cursor].getAttribute("data-href");
      }
    }
  });
})();
