// Flags pages: small progressive enhancements; every form works without this file.
(function () {
  "use strict";

  // The outcome box matters only when closing a flag: show it then, and say it is required.
  function wireStatusForm() {
    var form = document.getElementById("status-form");
    if (!form) return;
    var select = form.querySelector("select[name=status]");
    var box = form.querySelector("textarea[name=resolution]");
    if (!select || !box) return;
    var field = box.closest(".field");
    function update() {
      var closing = select.value === "resolved" || select.value === "dismissed";
      if (field) field.hidden = !closing;
      box.required = closing;
    }
    select.addEventListener("change", update);
    update();
  }

  // Incident notices cannot be taken back: ask once before sending.
  function wireIncidentForm() {
    var form = document.getElementById("incident-form");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm") || "Send?")) event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireStatusForm();
    wireIncidentForm();
  });
})();
