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

  // Tell screen readers what happened (the live region is in base.html), and show it briefly
  // on the button for everyone else.
  function announce(button, message) {
    var live = document.getElementById("live-status");
    if (live) {
      live.textContent = "";
      window.setTimeout(function () { live.textContent = message; }, 50);
    }
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = message;
    window.setTimeout(function () { button.textContent = button.dataset.label; }, 2000);
  }

  function copy(button, text) {
    if (!navigator.clipboard) {
      announce(button, "Copy is not available here");
      return;
    }
    navigator.clipboard.writeText(text).then(
      function () { announce(button, "Copied"); },
      function () { announce(button, "Copy failed"); }
    );
  }

  function download(button, text) {
    var header = "Lightbox recovery codes\nEach code works once. Keep them apart from your phone.\n\n";
    var blob = new Blob([header + text + "\n"], { type: "text/plain" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = button.getAttribute("data-filename") || "download.txt";
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
    // The browser reads the blob after this handler returns; free it once it surely has.
    window.setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
    announce(button, "Downloaded");
  }

  // The main menu on a phone: one "Menu" button instead of nine links wrapping over a quarter of
  // the screen. CSS collapses it only below 40rem, so a resized window needs nothing from here.
  var nav = document.querySelector(".site-nav");
  var toggle = nav && nav.querySelector(".nav-toggle");
  if (toggle) {
    nav.classList.add("collapsible");
    var setOpen = function (open) {
      nav.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    };
    toggle.addEventListener("click", function () { setOpen(!nav.classList.contains("open")); });
    nav.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) {
        setOpen(false);
        toggle.focus();
      }
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-copy], [data-download], [data-print]");
    if (!target) return;
    if (target.hasAttribute("data-copy")) {
      copy(target, textOf(target.getAttribute("data-copy")));
    } else if (target.hasAttribute("data-download")) {
      download(target, textOf(target.getAttribute("data-download")));
    } else if (target.hasAttribute("data-print")) {
      window.print();
    }
  });
})();
