// The account page's time zone: offers the zone this browser is set to, so nobody has to find
// "Europe/London" among six hundred names. The form works fully without this file.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_time_zone");
    var offer = document.getElementById("tz-suggest");
    if (!select || !offer || !window.Intl) { return; }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var known = Array.from(select.options).some(function (o) { return o.value === zone; });
    if (!zone || !known || select.value === zone) { return; }
    offer.querySelector("[data-zone]").textContent = zone.replace(/_/g, " ");
    offer.hidden = false;
    document.getElementById("tz-use").addEventListener("click", function () {
      select.value = zone;
      select.form.requestSubmit();
    });
  });
})();
