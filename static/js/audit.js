// The access log: small progressive enhancements; the page works fully without this file.
(function () {
  "use strict";
  // After filtering or paging, move focus to the list's heading so keyboard and screen-reader
  // users land on the results instead of the top of a long page.
  document.addEventListener("DOMContentLoaded", function () {
    var params = new URLSearchParams(window.location.search);
    var heading = document.getElementById("log-heading");
    if (heading && Array.from(params.keys()).length) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
    // Empty filter fields are left out of the URL, so shared links stay short and readable.
    var form = document.getElementById("log-filters");
    if (form) {
      form.addEventListener("submit", function () {
        Array.from(form.elements).forEach(function (el) {
          if (el.name && !el.value) { el.disabled = true; }
        });
      });
    }
  });
})();
