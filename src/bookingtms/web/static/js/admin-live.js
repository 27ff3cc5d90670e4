// Live lists for the staff dashboard (PRD 2.4): listens to /admin/events (Server-Sent Events of the
// organization's booking and availability changes) and re-fetches the page's [data-live] region,
// swapping it in place while keeping focus and scroll. Without JavaScript the pages work as they are.
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  if (!region || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var note = document.getElementById("live-status");
  // data-live-venue / -session / -booking: only changes of that venue, session or booking matter here.
  var filters = { venue_id: region.getAttribute("data-live-venue"),
                  session_id: region.getAttribute("data-live-session"),
                  booking_id: region.getAttribute("data-live-booking") };
  var timer = null, busy = false, again = false;

  function relevant(data) {
    for (var key in filters) {
      if (filters[key] && data[key] && data[key] !== filters[key]) { return false; }
    }
    return true;
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 300); // a burst of changes (a booking moves several rows) -> one fetch
  }

  function focusKey() {
    var active = document.activeElement;
    if (!active || !region.contains(active)) { return null; }
    return active.id || null;
  }

  function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live]");
        if (!fresh || fresh.innerHTML === region.innerHTML) { return; }
        var key = focusKey(), x = window.scrollX, y = window.scrollY;
        region.innerHTML = fresh.innerHTML;
        window.scrollTo(x, y);
        if (key) {
          var again_ = document.getElementById(key);
          if (again_) { again_.focus({ preventScroll: true }); }
        }
        region.setAttribute("data-updated", String(Date.now()));
        if (note) {
          var now = new Date();
          note.textContent = "Updated at " + ("0" + now.getHours()).slice(-2) + ":" + ("0" + now.getMinutes()).slice(-2) + ".";
        }
      })
      .catch(function () { /* offline for a moment: the next change tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  var source = new EventSource("/admin/events");
  function onChange(event) {
    var data = {};
    try { data = JSON.parse(event.data || "{}"); } catch (e) { data = {}; }
    if (relevant(data)) { schedule(); }
  }
  source.addEventListener("availability", onChange);
  source.addEventListener("booking", onChange);
  source.addEventListener("resync", schedule);
  window.addEventListener("pagehide", function () { source.close(); });
})();
