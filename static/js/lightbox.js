// Small progressive enhancements; every page works without them. Served from our origin so the
// CSP can forbid inline script.
(function () {
  "use strict";

  function textOf(selector) {
    var el = document.querySelector(selector);
    if (!el) return "";
    if (el.dataset.secret) return el.dataset.secret;
    var items = el.querySelectorAll("li");
    if (items.length) return Array.prototype.map.call(items, function (li) { return li.textContent.trim(); }).join("\n");
    return el.textContent.trim();
  }

  function announce(button, message) {
    var original = button.textContent;
    button.textContent = message;
    setTimeout(function () { button.textContent = original; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-copy], [data-download], [data-print]");
    if (!target) return;
    if (target.hasAttribute("data-copy")) {
      navigator.clipboard.writeText(textOf(target.getAttribute("data-copy"))).then(
        function () { announce(target, "Copied"); },
        function () { announce(target, "Copy failed"); }
      );
    } else if (target.hasAttribute("data-download")) {
      var header = "Lightbox recovery codes\nEach code works once. Keep them apart from your phone.\n\n";
      var blob = new Blob([header + textOf(target.getAttribute("data-download")) + "\n"], { type: "text/plain" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = target.getAttribute("data-filename") || "download.txt";
      document.body.appendChild(link);
      link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 0);
    } else if (target.hasAttribute("data-print")) {
      window.print();
    }
  });
})();
