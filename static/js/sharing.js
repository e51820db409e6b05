// Live progress for pushes on the sharing page: polls each running push's JSON status and
// updates its bar, count and label; reloads the page once none is running.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function start() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-push-status-url]"));
    if (!rows.length) return;

    function poll() {
      var pending = rows.map(function (row) {
        return fetch(row.getAttribute("data-push-status-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (data) {
            if (!data) return true;
            var bar = row.querySelector(".push-bar");
            var count = row.querySelector(".push-count");
            var label = row.querySelector(".push-label");
            if (bar) { bar.max = data.total; bar.value = data.sent; bar.textContent = data.percent + "%"; }
            if (count) { count.textContent = data.sent + " of " + data.total + " images"; }
            if (label) { label.textContent = data.label; }
            return data.active;
          })
          .catch(function () { return true; });
      });
      Promise.all(pending).then(function (active) {
        if (active.some(Boolean)) { window.setTimeout(poll, POLL_MS); } else { window.location.reload(); }
      });
    }
    window.setTimeout(poll, POLL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
