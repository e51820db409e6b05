// Live progress for an export: polls the small JSON status endpoint and updates the bar.
// Reloads the page once the job is no longer running, so the download button appears.
(function () {
  "use strict";
  var POLL_MS = 1500;

  function start() {
    var box = document.getElementById("export-progress");
    var initial = document.getElementById("export-status");
    if (!box || !initial) return;
    var state = JSON.parse(initial.textContent);
    if (!state.active) return;
    var url = box.getAttribute("data-export-status-url");
    var bar = document.getElementById("export-bar");
    var label = document.getElementById("export-label");

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { window.setTimeout(poll, POLL_MS * 2); return; }
          if (bar) { bar.value = data.progress; bar.textContent = data.progress + "%"; }
          if (label) { label.textContent = data.label + (data.active ? " · " + data.progress + "%" : ""); }
          if (data.active) { window.setTimeout(poll, POLL_MS); } else { window.location.reload(); }
        })
        .catch(function () { window.setTimeout(poll, POLL_MS * 2); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
