/* The booking widget (/widget/{embed_key}). Runs on the page the server rendered (venue and
 * activities) and books through the public JSON API of this same origin:
 *   activity -> month calendar (days with space) -> time (live remaining spots over SSE) and party
 *   size -> hold (countdown) -> customer details -> checkout (offline: confirmed; Stripe: the top
 *   window goes to Stripe Checkout and comes back to the customer's booking page) -> confirmation.
 * Every time is shown in the venue's time zone. Each new step moves focus to its heading.
 * On every widget page (error pages too) it reports the document's height to the loader. */
(function () {
  "use strict";

  // ---------------------------------------------------------------------------------------------
  // Height for the loader (static/js/widget.js): the iframe follows the content.
  // ---------------------------------------------------------------------------------------------
  var lastHeight = 0;
  function reportHeight() {
    if (window.parent === window) { return; }
    var height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height > 0 && height !== lastHeight) {
      lastHeight = height;
      window.parent.postMessage({ type: "bookingtms:height", height: height }, "*");
    }
  }
  if ("ResizeObserver" in window) { new ResizeObserver(reportHeight).observe(document.body); }
  window.addEventListener("load", reportHeight);
  reportHeight();

  var root = document.getElementById("widget");
  if (!root) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var TZ = config.timezone;
  var sections = {
    activity: document.getElementById("step-activity"), date: document.getElementById("step-date"),
    time: document.getElementById("step-time"), details: document.getElementById("step-details"),
    done: document.getElementById("step-done")
  };
  var liveRegion = document.getElementById("w-live");
  var alertBox = document.getElementById("w-alert");

  var state = {
    activity: null, year: 0, month: 0, sessions: new Map(), loading: false, request: 0, day: null,
    sessionId: null, spots: 0, email: "", hold: null, timer: null, lastAnnounced: null, events: null,
    submitting: false, holding: false, customer: null
  };

  // ---------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) { return; }
      if (name === "text") { node.textContent = value; }
      else if (name === "class") { node.className = value; }
      else if (name.indexOf("on") === 0) { node.addEventListener(name.slice(2), value); }
      else { node.setAttribute(name, value === true ? "" : String(value)); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function parts(formatter, date) {
    var out = {};
    formatter.formatToParts(date).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }

  var fmtDay = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" });
  var fmtClock = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var fmtLong = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", weekday: "long", day: "numeric", month: "long", year: "numeric" });
  var fmtMonth = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", month: "long", year: "numeric" });

  /** "2026-03-14": the venue-local calendar day of an instant. */
  function localDay(value) {
    var p = parts(fmtDay, new Date(value));
    return p.year + "-" + p.month + "-" + p.day;
  }
  function clock(value) { var p = parts(fmtClock, new Date(value)); return p.hour + ":" + p.minute; }
  function zoneName(value) {
    try {
      return parts(new Intl.DateTimeFormat("en-US", { timeZone: TZ, timeZoneName: "short" }), new Date(value)).timeZoneName || TZ;
    } catch (e) { return TZ; }
  }
  /** "Friday 14 March 2026" for a "2026-03-14" day. */
  function longDate(day) {
    var bits = day.split("-").map(Number);
    var p = parts(fmtLong, new Date(Date.UTC(bits[0], bits[1] - 1, bits[2], 12)));
    return p.weekday + " " + p.day + " " + p.month + " " + p.year;
  }
  function monthLabel(year, month) { return fmtMonth.format(new Date(Date.UTC(year, month - 1, 1, 12))); }
  function daysIn(year, month) { return new Date(Date.UTC(year, month, 0)).getUTCDate(); }

  function money(amount, currency) {
    var digits = 2;
    try { digits = new Intl.NumberFormat("en", { style: "currency", currency: currency }).resolvedOptions().maximumFractionDigits; }
    catch (e) { digits = 2; }
    var value = amount / Math.pow(10, digits);
    return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) + " " + currency;
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    return "w-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  }

  function announce(text) {
    liveRegion.textContent = "";
    window.setTimeout(function () { liveRegion.textContent = text; }, 50);
  }

  function showAlert(text) { alertBox.textContent = text; alertBox.hidden = false; }
  function clearAlert() { alertBox.textContent = ""; alertBox.hidden = true; }

  function showStep(name, focus) {
    Object.keys(sections).forEach(function (key) { sections[key].hidden = key !== name; });
    if (focus !== false) {
      var heading = sections[name].querySelector("h1");
      if (heading) { heading.focus(); }
    }
    reportHeight();
  }

  // ---------------------------------------------------------------------------------------------
  // The public API, and its problems as sentences a customer understands
  // ---------------------------------------------------------------------------------------------
  function ApiError(status, problem, retryAfter) {
    this.status = status;
    this.problem = problem || {};
    this.code = (problem && problem.code) || (status === 0 ? "network" : "");
    this.retryAfter = retryAfter;
  }

  function api(method, path, body, headers) {
    var options = { method: method, headers: Object.assign({ Accept: "application/json" }, headers || {}), credentials: "omit" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(config.api + path, options).catch(function () {
      throw new ApiError(0, null, null);
    }).then(function (response) {
      var read = response.status === 204 ? Promise.resolve(null) : response.json().catch(function () { return null; });
      return read.then(function (data) {
        if (!response.ok) { throw new ApiError(response.status, data, response.headers.get("Retry-After")); }
        return { data: data, response: response };
      });
    });
  }

  var MESSAGES = {
    network: "We could not reach the booking service. Check your connection and try again.",
    reservation_expired: "Your hold on these spots ended, so they were released. Please choose a time again.",
    organization_suspended: "This business is not taking bookings at the moment.",
    venue_not_found: "This booking page is no longer available.",
    session_not_found: "This time is no longer available. Please choose another.",
    session_closed: "This time is no longer open for booking. Please choose another.",
    session_started: "This time has already started. Please choose a later one.",
    activity_unavailable: "This activity is not taking bookings at the moment.",
    plan_limit_reached: "Online booking is paused for this business right now. Please contact them directly.",
    payments_unavailable: "Card payments are not available right now. Please contact the venue to book.",
    payment_provider_error: "The payment service could not be reached. Please try again in a moment.",
    reservation_converted: "This booking has already been completed.",
    reservation_not_found: "Your hold could not be found any more. Please choose a time again.",
    too_many_streams: "The booking service is busy. Please try again in a moment.",
    unavailable: "The booking service is busy. Please try again in a moment.",
    retry: "The booking service is busy. Please try again in a moment."
  };

  function human(error) {
    if (!(error instanceof ApiError)) { return "Something went wrong. Please try again."; }
    var problem = error.problem;
    if (error.status === 429 || error.code === "rate_limited") {
      var wait = parseInt(error.retryAfter || problem.retry_after || "0", 10);
      return "Too many requests from your network right now. Please wait " +
        (wait > 0 ? plural(wait, "second", "seconds") : "a moment") + " and try again.";
    }
    if (error.code === "sold_out") {
      var left = problem.capacity_remaining;
      return left > 0
        ? "Only " + plural(left, "spot is", "spots are") + " left at this time. Choose a smaller party or another time."
        : "Sorry, the last spots at this time have just been taken. Please choose another time.";
    }
    if (MESSAGES[error.code]) { return MESSAGES[error.code]; }
    if (error.status >= 500) { return "Something went wrong on our side. Please try again in a moment."; }
    if (typeof problem.detail === "string" && problem.detail.length < 300) { return problem.detail; }
    return "Something went wrong. Please try again.";
  }

  // ---------------------------------------------------------------------------------------------
  // Live availability (Server-Sent Events)
  // ---------------------------------------------------------------------------------------------
  function openEvents() {
    if (state.events || !("EventSource" in window)) { return; }
    var source = new EventSource(config.api + "/events");
    source.addEventListener("availability", function (event) {
      var change;
      try { change = JSON.parse(event.data); } catch (e) { return; }
      onAvailability(change);
    });
    source.addEventListener("resync", function () { if (state.activity) { loadMonth(false); } });
    // For the curious (and the browser tests): whether live updates are flowing.
    source.addEventListener("open", function () { root.setAttribute("data-live", "connected"); });
    source.addEventListener("error", function () { root.setAttribute("data-live", "reconnecting"); });
    state.events = source;
  }

  function onAvailability(change) {
    if (!state.activity || change.activity_id !== state.activity.id) { return; }
    var session = state.sessions.get(change.session_id);
    if (change.is_closed || new Date(change.start_time) <= new Date()) {
      if (!session) { return; }
      state.sessions.delete(change.session_id);
    } else if (session) {
      if (session.capacity_remaining === change.capacity_remaining) { return; }
      session.capacity_remaining = change.capacity_remaining;
      session.capacity_total = change.capacity_total;
    } else {
      var day = localDay(change.start_time).split("-").map(Number);
      if (day[0] !== state.year || day[1] !== state.month) { return; }
      state.sessions.set(change.session_id, {
        id: change.session_id, activity_id: change.activity_id, start_time: change.start_time,
        capacity_total: change.capacity_total, capacity_remaining: change.capacity_remaining,
        price_amount: state.activity.price_amount, currency: state.activity.currency
      });
    }
    if (!sections.date.hidden) { renderDays(); }
    if (!sections.time.hidden) { updateTimes(change.session_id); }
  }

  // ---------------------------------------------------------------------------------------------
  // Step 1: activity
  // ---------------------------------------------------------------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("[data-activity]"), function (button) {
    button.disabled = false;
    button.addEventListener("click", function () { chooseActivity(button.getAttribute("data-activity")); });
  });

  var zoneLine = document.getElementById("w-zone");
  if (zoneLine) { zoneLine.textContent = "Times are in the venue's time zone: " + TZ + " (" + zoneName(Date.now()) + ")."; }

  function chooseActivity(id) {
    clearAlert();
    state.activity = config.activities.filter(function (a) { return a.id === id; })[0] || null;
    if (!state.activity) { return; }
    var today = localDay(Date.now()).split("-").map(Number);
    state.year = today[0];
    state.month = today[1];
    state.day = null;
    state.sessionId = null;
    openEvents();
    renderDateStep();
    showStep("date");
    loadMonth(true);
  }

  // ---------------------------------------------------------------------------------------------
  // Step 2: a month calendar of the days with space
  // ---------------------------------------------------------------------------------------------
  function renderDateStep() {
    var section = sections.date;
    clear(section);
    section.appendChild(el("div", { class: "w-nav" }, [
      el("button", { type: "button", class: "w-back", text: "\u2190 All activities", onclick: backToActivities })
    ]));
    section.appendChild(el("h1", { id: "h-date", class: "w-title", tabindex: "-1", text: "Choose a date" }));
    section.appendChild(el("p", { class: "w-sub", text: state.activity.name }));
    section.appendChild(el("div", { class: "w-month" }, [
      el("button", { type: "button", class: "secondary", id: "w-prev", onclick: function () { shiftMonth(-1); } }, [
        el("span", { "aria-hidden": "true", text: "\u2039" }), el("span", { class: "visually-hidden", text: "Previous month" })
      ]),
      el("h2", { id: "w-month-label", "aria-live": "polite" }),
      el("button", { type: "button", class: "secondary", id: "w-next", onclick: function () { shiftMonth(1); } }, [
        el("span", { class: "visually-hidden", text: "Next month" }), el("span", { "aria-hidden": "true", text: "\u203a" })
      ])
    ]));
    var weekdays = el("ul", { class: "w-weekdays", "aria-hidden": "true" });
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].forEach(function (d) { weekdays.appendChild(el("li", { text: d })); });
    section.appendChild(weekdays);
    section.appendChild(el("ul", { class: "w-days", id: "w-days", "aria-labelledby": "w-month-label" }));
    section.appendChild(el("p", { class: "w-status w-loading", id: "w-days-status", role: "status" }));
    section.appendChild(el("p", { class: "w-legend", text: "Highlighted days have times with free spots. Times are in " + TZ + " time." }));
    renderDays();
  }

  function backToActivities() {
    clearAlert();
    state.activity = null;
    showStep("activity");
  }

  function isCurrentMonth() {
    var today = localDay(Date.now()).split("-").map(Number);
    return state.year === today[0] && state.month === today[1];
  }

  function shiftMonth(delta) {
    clearAlert();
    var month = state.month + delta;
    state.year += Math.floor((month - 1) / 12);
    state.month = ((month - 1) % 12 + 12) % 12 + 1;
    state.sessions = new Map();
    loadMonth(false);  // marks the month as loading before it is drawn
    renderDays();
  }

  function loadMonth(advanceIfEmpty, tries) {
    var request = ++state.request;
    var year = state.year, month = state.month;
    var first = year + "-" + pad(month) + "-01";
    var last = year + "-" + pad(month) + "-" + pad(daysIn(year, month));
    state.loading = true;
    setDaysStatus("Loading available days\u2026");
    var query = "?activity_id=" + encodeURIComponent(state.activity.id) + "&from=" + first + "&to=" + last;
    return api("GET", "/availability" + query).then(function (result) {
      if (request !== state.request) { return; }
      state.loading = false;
      var sessions = new Map();
      result.data.sessions.forEach(function (s) { sessions.set(s.id, s); });
      state.sessions = sessions;
      var open = daysWithSpace();
      if (advanceIfEmpty && Object.keys(open).length === 0 && (tries || 0) < 2) {
        // Nothing left this month (e.g. the last days of it): look at the next one.
        state.month = month === 12 ? 1 : month + 1;
        state.year = month === 12 ? year + 1 : year;
        return loadMonth(true, (tries || 0) + 1);
      }
      renderDays();
      if (!sections.time.hidden) { renderTimeStep(false); }
    }).catch(function (error) {
      if (request !== state.request) { return; }
      state.loading = false;
      setDaysStatus("");
      showAlert(human(error));
    });
  }

  function setDaysStatus(text) {
    var status = document.getElementById("w-days-status");
    if (status) { status.textContent = text; status.hidden = !text; }
  }

  /** {"2026-03-14": number of times with space} for the loaded month. */
  function daysWithSpace() {
    var open = {};
    state.sessions.forEach(function (s) {
      if (s.capacity_remaining > 0 && new Date(s.start_time) > new Date()) {
        var day = localDay(s.start_time);
        open[day] = (open[day] || 0) + 1;
      }
    });
    return open;
  }

  function renderDays() {
    var list = document.getElementById("w-days");
    if (!list) { return; }
    var focused = document.activeElement && document.activeElement.getAttribute("data-day");
    document.getElementById("w-month-label").textContent = monthLabel(state.year, state.month);
    var prev = document.getElementById("w-prev");
    prev.disabled = isCurrentMonth();
    if (prev.disabled && document.activeElement === prev) { document.getElementById("w-next").focus(); }
    if (prev.disabled && !sections.date.hidden && document.activeElement === document.body) {
      document.getElementById("w-next").focus();  // the button just pressed went away under the keyboard
    }
    var open = state.loading ? {} : daysWithSpace();
    var today = localDay(Date.now());
    clear(list);
    var offset = (new Date(Date.UTC(state.year, state.month - 1, 1)).getUTCDay() + 6) % 7; // Monday first
    for (var i = 0; i < offset; i++) { list.appendChild(el("li", { "aria-hidden": "true" })); }
    var count = 0;
    for (var d = 1; d <= daysIn(state.year, state.month); d++) {
      var day = state.year + "-" + pad(state.month) + "-" + pad(d);
      var times = open[day] || 0;
      count += times ? 1 : 0;
      var label = longDate(day) + ", " + (state.loading ? "loading" : times ? plural(times, "time", "times") + " available" : "no times available");
      var button = el("button", {
        type: "button", class: "w-day" + (day === today ? " is-today" : ""), "data-day": day, "aria-label": label,
        "aria-current": day === today ? "date" : null, disabled: !times,
        onclick: (function (chosen) { return function () { chooseDay(chosen); }; })(day)
      }, [el("span", { text: String(d) }), times ? el("span", { class: "w-dot", "aria-hidden": "true" }) : null]);
      list.appendChild(el("li", {}, [button]));
    }
    if (!state.loading) {
      setDaysStatus(count ? "" : "No free times in " + monthLabel(state.year, state.month) + ". Try the next month.");
    }
    if (focused) {
      var again = list.querySelector('[data-day="' + focused + '"]');
      if (again && !again.disabled) { again.focus(); }
      else if (sections.date.contains(document.activeElement) === false) { document.getElementById("h-date").focus(); }
    }
    reportHeight();
  }

  // ---------------------------------------------------------------------------------------------
  // Step 3: a time on that day, the party size and the email the hold is kept for
  // ---------------------------------------------------------------------------------------------
  function chooseDay(day) {
    clearAlert();
    state.day = day;
    state.sessionId = null;
    renderTimeStep(true);
  }

  function sessionsOfDay() {
    var list = [];
    state.sessions.forEach(function (s) {
      if (localDay(s.start_time) === state.day && new Date(s.start_time) > new Date()) { list.push(s); }
    });
    return list.sort(function (a, b) { return new Date(a.start_time) - new Date(b.start_time); });
  }

  function leftText(s) {
    return s.capacity_remaining > 0 ? plural(s.capacity_remaining, "spot", "spots") + " left" : "Sold out";
  }

  function timeButton(s) {
    var button = el("button", { type: "button", class: "w-time", "data-session": s.id, "aria-pressed": "false",
      onclick: function () { chooseTime(s.id); } }, [
      el("span", { class: "w-clock", text: clock(s.start_time) }), el("span", { class: "w-left" })
    ]);
    fillTimeButton(button, s);
    return button;
  }

  function fillTimeButton(button, s) {
    var soldOut = s.capacity_remaining <= 0;
    button.querySelector(".w-left").textContent = leftText(s);
    button.setAttribute("aria-label", clock(s.start_time) + ", " + leftText(s).toLowerCase());
    button.disabled = soldOut;
    button.classList.toggle("is-sold-out", soldOut);
    button.classList.toggle("is-low", !soldOut && s.capacity_remaining <= 2);
    button.setAttribute("aria-pressed", String(!soldOut && s.id === state.sessionId));
  }

  function renderTimeStep(focus) {
    var section = sections.time;
    clear(section);
    section.appendChild(el("div", { class: "w-nav" }, [
      el("button", { type: "button", class: "w-back", text: "\u2190 Other dates", onclick: backToDates })
    ]));
    section.appendChild(el("h1", { id: "h-time", class: "w-title", tabindex: "-1", text: "Choose a time" }));
    section.appendChild(el("p", { class: "w-sub", text: state.activity.name + " \u00b7 " + longDate(state.day) +
      " \u00b7 times in " + TZ + " (" + zoneName(state.day + "T12:00:00Z") + ")" }));
    var list = el("ul", { class: "w-times", id: "w-times", "aria-label": "Times on " + longDate(state.day) });
    var sessions = sessionsOfDay();
    sessions.forEach(function (s) { list.appendChild(el("li", {}, [timeButton(s)])); });
    section.appendChild(list);
    section.appendChild(el("p", { class: "empty", id: "w-no-times", hidden: sessions.length > 0,
      text: "No times are left on this day. Please choose another date." }));
    section.appendChild(partyFieldset());
    if (state.sessionId && !state.sessions.get(state.sessionId)) { state.sessionId = null; }
    updateParty();
    showStep("time", focus);
  }

  function backToDates() {
    clearAlert();
    state.sessionId = null;
    renderDays();
    showStep("date");
  }

  function partyFieldset() {
    var a = state.activity;
    var hint = a.min_players === a.max_players ? "This activity is for " + plural(a.min_players, "player", "players") + "."
      : "From " + a.min_players + " to " + a.max_players + " players.";
    return el("form", { class: "w-party", id: "w-party", hidden: true, novalidate: true,
      onsubmit: function (event) { event.preventDefault(); holdSpots(); } }, [el("fieldset", {}, [
      el("legend", { text: "Your party" }),
      el("div", { class: "field" }, [
        el("label", { for: "w-spots", text: "Party size" }),
        el("select", { id: "w-spots", "aria-describedby": "h-spots", onchange: function (e) {
          state.spots = parseInt(e.target.value, 10); updateTotal();
        } }),
        el("p", { class: "hint", id: "h-spots", text: hint }),
        el("p", { class: "error", id: "e-spots", hidden: true })
      ]),
      el("div", { class: "field" }, [
        el("label", { for: "w-hold-email", text: "Email" }),
        el("input", { id: "w-hold-email", type: "email", name: "email", autocomplete: "email", required: true,
          "aria-describedby": "h-hold-email", value: state.email, maxlength: "320" }),
        el("p", { class: "hint", id: "h-hold-email", text: "We keep these spots for you while you finish booking." }),
        el("p", { class: "error", id: "e-hold-email", hidden: true })
      ]),
      el("p", { class: "w-total", id: "w-total" }),
      el("button", { type: "submit", class: "button", id: "w-hold", text: "Hold these spots" })
    ])]);
  }

  function chooseTime(id) {
    clearAlert();
    state.sessionId = id;
    Array.prototype.forEach.call(document.querySelectorAll(".w-time"), function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-session") === id));
    });
    updateParty();
  }

  function selectedSession() { return state.sessionId ? state.sessions.get(state.sessionId) : null; }

  /** The party size choices: the activity's range, never above what is left. */
  function updateParty() {
    var party = document.getElementById("w-party");
    if (!party) { return; }
    var s = selectedSession();
    if (!s || s.capacity_remaining <= 0) { party.hidden = true; reportHeight(); return; }
    var a = state.activity;
    var most = Math.min(a.max_players, s.capacity_remaining);
    var select = document.getElementById("w-spots");
    var wanted = state.spots || a.min_players;
    clear(select);
    if (most < a.min_players) {
      party.hidden = false;
      select.disabled = true;
      document.getElementById("w-hold").disabled = true;
      showFieldError("spots", "Only " + plural(s.capacity_remaining, "spot is", "spots are") + " left, fewer than this activity's minimum of " + a.min_players + ". Please choose another time.");
      reportHeight();
      return;
    }
    select.disabled = false;
    document.getElementById("w-hold").disabled = false;
    hideFieldError("spots");
    for (var n = a.min_players; n <= most; n++) {
      select.appendChild(el("option", { value: String(n), text: plural(n, "person", "people"), selected: n === Math.min(Math.max(wanted, a.min_players), most) }));
    }
    state.spots = parseInt(select.value, 10);
    party.hidden = false;
    updateTotal();
    reportHeight();
  }

  function updateTotal() {
    var s = selectedSession();
    var total = document.getElementById("w-total");
    if (!s || !total) { return; }
    total.textContent = "Total: " + money(s.price_amount * state.spots, s.currency) + " (" +
      plural(state.spots, "person", "people") + " \u00d7 " + money(s.price_amount, s.currency) + ")";
  }

  /** A live change to one session while the times are shown: updated in place (focus stays). */
  function updateTimes(sessionId) {
    var list = document.getElementById("w-times");
    if (!list) { return; }
    var s = state.sessions.get(sessionId);
    var button = list.querySelector('[data-session="' + sessionId + '"]');
    var wasFocused = button && document.activeElement === button;
    if (!s || localDay(s.start_time) !== state.day) {
      if (button) {
        button.parentNode.parentNode.removeChild(button.parentNode);
        if (sessionId === state.sessionId) { state.sessionId = null; updateParty(); }
        if (wasFocused) { document.getElementById("h-time").focus(); }
      } else if (s && localDay(s.start_time) === state.day) {
        renderTimeStep(false);
      }
      document.getElementById("w-no-times").hidden = list.children.length > 0;
      return;
    }
    if (!button) { renderTimeStep(false); return; }
    fillTimeButton(button, s);
    announce(clock(s.start_time) + ": " + leftText(s).toLowerCase() + ".");
    // (While our own hold request is out, its answer says what happened to us.)
    if (s.capacity_remaining <= 0 && sessionId === state.sessionId && !state.hold && !state.holding) {
      state.sessionId = null;
      showAlert("Sorry, " + clock(s.start_time) + " has just sold out. Please choose another time.");
    }
    if (!state.holding && (sessionId === state.sessionId || s.capacity_remaining <= 0)) { updateParty(); }
    if (wasFocused && button.disabled) { document.getElementById("h-time").focus(); }
  }

  function showFieldError(name, message) {
    var error = document.getElementById("e-" + name);
    var input = document.getElementById(name === "spots" ? "w-spots" : name === "hold-email" ? "w-hold-email" : "f-" + name);
    if (!error || !input) { return false; }
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    var hint = document.getElementById("h-" + name);
    input.setAttribute("aria-describedby", (hint ? hint.id + " " : "") + error.id);
    reportHeight();
    return true;
  }

  function hideFieldError(name) {
    var error = document.getElementById("e-" + name);
    var input = document.getElementById(name === "spots" ? "w-spots" : name === "hold-email" ? "w-hold-email" : "f-" + name);
    if (error) { error.textContent = ""; error.hidden = true; }
    if (input) {
      input.removeAttribute("aria-invalid");
      var hint = document.getElementById("h-" + name);
      if (hint) { input.setAttribute("aria-describedby", hint.id); } else { input.removeAttribute("aria-describedby"); }
    }
  }

  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  var PHONE = /^\+?[0-9 ()\-.]{5,32}$/;

  function holdSpots() {
    var s = selectedSession();
    if (!s) { return; }  // (the time just sold out: keep the alert that says so)
    clearAlert();
    var emailInput = document.getElementById("w-hold-email");
    var email = emailInput.value.trim();
    if (!EMAIL.test(email)) {
      showFieldError("hold-email", email ? "Enter a valid email address, like name@example.com." : "Enter your email address.");
      emailInput.focus();
      return;
    }
    hideFieldError("hold-email");
    state.email = email;
    var button = document.getElementById("w-hold");
    button.disabled = true;
    button.textContent = "Holding\u2026";
    var session = s, spots = state.spots;
    state.holding = true;
    api("POST", "/reservations", { session_id: session.id, spots: spots, customer_email: email }, { "Idempotency-Key": newKey() })
      .then(function (result) {
        state.holding = false;
        clearAlert();
        var data = result.data;
        var serverNow = Date.parse(result.response.headers.get("Date") || "");
        var expires = Date.parse(data.expires_at);
        var left = isNaN(serverNow) ? expires - Date.now() : expires - serverNow;
        state.hold = { id: data.reservation_id, session: session, spots: data.spots, email: email,
          deadline: performance.now() + Math.max(0, left) };
        renderDetails();
        showStep("details");
        startCountdown();
      })
      .catch(function (error) {
        state.holding = false;
        button.disabled = false;
        button.textContent = "Hold these spots";
        if (error.code === "sold_out") {
          if (typeof error.problem.capacity_remaining === "number") {
            session.capacity_remaining = error.problem.capacity_remaining;
          }
          if (session.capacity_remaining <= 0) { state.sessionId = null; }
          var shown = document.querySelector('.w-time[data-session="' + session.id + '"]');
          if (shown) { fillTimeButton(shown, session); }
          updateParty();
          showAlert(human(error));
          document.getElementById("h-time").focus();
          return;
        }
        if (error.code === "invalid_party_size") {
          showFieldError("spots", human(error));
          document.getElementById("w-spots").focus();
          return;
        }
        var fields = (error.problem.errors || []).map(function (e) { return e.field; });
        if (fields.indexOf("customer_email") >= 0) {
          showFieldError("hold-email", "Enter a valid email address, like name@example.com.");
          emailInput.focus();
          return;
        }
        showAlert(human(error));
        if (["session_closed", "session_started", "session_not_found"].indexOf(error.code) >= 0) {
          state.sessions.delete(session.id);
          state.sessionId = null;
          renderTimeStep(true);
        }
      });
  }

  // ---------------------------------------------------------------------------------------------
  // Step 4: the hold's countdown and the customer's details
  // ---------------------------------------------------------------------------------------------
  function field(name, label, attrs, hint) {
    var describedBy = hint ? "h-" + name : null;
    return el("div", { class: "field" }, [
      el("label", { for: "f-" + name }, [label, attrs.required ? el("span", { class: "req", "aria-hidden": "true", text: " *" }) : null]),
      el("input", Object.assign({ id: "f-" + name, name: name, "aria-describedby": describedBy }, attrs)),
      hint ? el("p", { class: "hint", id: "h-" + name, text: hint }) : null,
      el("p", { class: "error", id: "e-" + name, hidden: true })
    ]);
  }

  function summary(session, spots) {
    return el("dl", { class: "facts w-summary" }, [
      el("dt", { text: "Activity" }), el("dd", { text: state.activity.name }),
      el("dt", { text: "Date" }), el("dd", { text: longDate(localDay(session.start_time)) }),
      el("dt", { text: "Time" }), el("dd", { text: clock(session.start_time) + " " + zoneName(session.start_time) + " (" + TZ + ")" }),
      el("dt", { text: "Party size" }), el("dd", { text: plural(spots, "person", "people") }),
      el("dt", { text: "Price" }), el("dd", { text: money(session.price_amount * spots, session.currency) })
    ]);
  }

  function renderDetails() {
    var hold = state.hold;
    var section = sections.details;
    clear(section);
    var customer = state.customer || {};
    section.appendChild(el("h1", { id: "h-details", class: "w-title", tabindex: "-1", text: "Your details" }));
    section.appendChild(el("div", { class: "w-hold" }, [
      el("p", {}, ["Your spots are held for ", el("span", { class: "w-countdown", id: "w-countdown", role: "timer", "aria-live": "off" })]),
      el("button", { type: "button", class: "secondary small", id: "w-change", text: "Change time", onclick: changeTime })
    ]));
    section.appendChild(summary(hold.session, hold.spots));
    var online = config.payment === "stripe";
    var form = el("form", { class: "w-form", id: "w-form", novalidate: true, onsubmit: submitDetails }, [
      el("div", { class: "w-names" }, [
        field("first_name", "First name", { type: "text", autocomplete: "given-name", required: true, maxlength: "100", value: customer.first_name || "" }),
        field("last_name", "Last name", { type: "text", autocomplete: "family-name", required: true, maxlength: "100", value: customer.last_name || "" })
      ]),
      field("email", "Email", { type: "email", autocomplete: "email", required: true, maxlength: "320", value: hold.email }, "Your confirmation is sent here."),
      field("phone", config.requirePhone ? "Phone" : "Phone (optional)", { type: "tel", autocomplete: "tel", required: config.requirePhone, maxlength: "32", value: customer.phone || "" },
        config.requirePhone ? "The venue needs a number to reach you on the day." : "Only used if the venue needs to reach you."),
      field("promo_code", "Promo code (optional)", { type: "text", autocomplete: "off", maxlength: "64", value: customer.promo_code || "" }),
      el("div", { class: "w-actions" }, [
        el("button", { type: "submit", class: "button", id: "w-submit", text: online ? "Continue to payment" : "Confirm booking" })
      ]),
      el("p", { class: "hint", text: online ? "You will pay on Stripe's secure payment page, then come back to your booking."
        : "You pay at the venue. Nothing is charged now." })
    ]);
    section.appendChild(form);
  }

  function remainingSeconds() { return state.hold ? Math.max(0, Math.floor((state.hold.deadline - performance.now()) / 1000)) : 0; }

  function startCountdown() {
    stopCountdown();
    state.lastAnnounced = null;
    tick();
    state.timer = window.setInterval(tick, 1000);
  }

  function stopCountdown() {
    if (state.timer) { window.clearInterval(state.timer); state.timer = null; }
  }

  function tick() {
    var seconds = remainingSeconds();
    var shown = document.getElementById("w-countdown");
    if (shown) { shown.textContent = Math.floor(seconds / 60) + ":" + pad(seconds % 60); }
    // Announced politely once a minute and at 30 seconds, not every second.
    var minutes = Math.ceil(seconds / 60);
    var mark = seconds <= 30 && seconds > 0 ? "30s" : String(minutes);
    if (mark !== state.lastAnnounced && seconds > 0) {
      state.lastAnnounced = mark;
      announce(mark === "30s" ? "30 seconds left to finish your booking." :
        plural(minutes, "minute", "minutes") + " left to finish your booking.");
    }
    if (seconds <= 0) { holdEnded(MESSAGES.reservation_expired); }
  }

  function releaseHold(keepalive) {
    var hold = state.hold;
    state.hold = null;
    stopCountdown();
    if (!hold) { return Promise.resolve(); }
    if (keepalive) {
      try { fetch(config.api + "/reservations/" + hold.id, { method: "DELETE", keepalive: true, credentials: "omit" }); } catch (e) { /* leaving */ }
      return Promise.resolve();
    }
    return api("DELETE", "/reservations/" + hold.id).catch(function () { /* it expires on its own */ });
  }

  /** The hold is over (expired, or the API says so): back to the times, freshly loaded. */
  function holdEnded(message) {
    var session = state.hold && state.hold.session;
    releaseHold(false).then(function () {
      state.sessionId = null;
      if (session) { state.day = localDay(session.start_time); }
      return loadMonth(false);
    }).then(function () {
      renderTimeStep(true);
      showAlert(message);
    });
  }

  function changeTime() {
    clearAlert();
    var button = document.getElementById("w-change");
    if (button) { button.disabled = true; }
    holdEnded("Your spots were released. Choose another time.");
  }

  window.addEventListener("pagehide", function () { if (state.hold && !state.submitting) { releaseHold(true); } });

  var FIELD_MESSAGES = {
    first_name: "Enter your first name (up to 100 characters).",
    last_name: "Enter your last name (up to 100 characters).",
    email: "Enter a valid email address, like name@example.com.",
    phone: "Enter a phone number with digits, spaces and + ( ) - only.",
    promo_code: "Enter the promo code as written (up to 64 characters)."
  };

  function formValues() {
    function value(name) { return document.getElementById("f-" + name).value.trim(); }
    return { first_name: value("first_name"), last_name: value("last_name"), email: value("email"),
      phone: value("phone"), promo_code: value("promo_code") };
  }

  function validate(values) {
    var errors = {};
    if (!values.first_name) { errors.first_name = "Enter your first name."; }
    else if (values.first_name.length > 100) { errors.first_name = FIELD_MESSAGES.first_name; }
    if (!values.last_name) { errors.last_name = "Enter your last name."; }
    else if (values.last_name.length > 100) { errors.last_name = FIELD_MESSAGES.last_name; }
    if (!values.email) { errors.email = "Enter your email address."; }
    else if (!EMAIL.test(values.email)) { errors.email = FIELD_MESSAGES.email; }
    if (!values.phone && config.requirePhone) { errors.phone = "Enter a phone number the venue can reach you on."; }
    else if (values.phone && !PHONE.test(values.phone)) { errors.phone = FIELD_MESSAGES.phone; }
    if (values.promo_code.length > 64) { errors.promo_code = FIELD_MESSAGES.promo_code; }
    return errors;
  }

  function showErrors(errors) {
    var first = null;
    ["first_name", "last_name", "email", "phone", "promo_code"].forEach(function (name) {
      if (errors[name]) { showFieldError(name, errors[name]); first = first || name; } else { hideFieldError(name); }
    });
    if (first) { document.getElementById("f-" + first).focus(); }
    return first !== null;
  }

  function submitDetails(event) {
    event.preventDefault();
    clearAlert();
    if (!state.hold || state.submitting) { return; }
    var values = formValues();
    state.customer = values;
    if (showErrors(validate(values))) { return; }
    var customer = { email: values.email, first_name: values.first_name, last_name: values.last_name };
    if (values.phone) { customer.phone = values.phone; }
    var body = { customer: customer };
    if (values.promo_code) { body.promo_code = values.promo_code; }
    var button = document.getElementById("w-submit");
    var label = button.textContent;
    button.disabled = true;
    button.textContent = "Booking\u2026";
    state.submitting = true;
    var hold = state.hold;
    api("POST", "/reservations/" + hold.id + "/checkout", body, { "Idempotency-Key": newKey() })
      .then(function (result) {
        state.submitting = false;
        stopCountdown();
        state.hold = null;
        finish(result.data, hold, values);
      })
      .catch(function (error) {
        state.submitting = false;
        button.disabled = false;
        button.textContent = label;
        if (error.code === "reservation_expired" || error.code === "reservation_not_found") {
          holdEnded(human(error));
          return;
        }
        var problem = error.problem || {};
        var mapped = {};
        (problem.errors || []).forEach(function (e) {
          var name = String(e.field || "").replace(/^customer\./, "");
          if (!FIELD_MESSAGES[name]) { return; }
          if (name === "phone" && !values.phone) { mapped.phone = "Enter a phone number the venue can reach you on."; }
          else { mapped[name] = name === "promo_code" && e.message ? e.message : FIELD_MESSAGES[name]; }
        });
        if (problem.field === "promo_code" || error.code === "promo_code_invalid") {
          mapped.promo_code = problem.detail || "This promo code is not valid for this booking.";
        }
        if (Object.keys(mapped).length) { showErrors(mapped); return; }
        showAlert(human(error));
      });
  }

  // ---------------------------------------------------------------------------------------------
  // Step 5: confirmation (or, with Stripe, off to the payment page)
  // ---------------------------------------------------------------------------------------------
  function samePath(url) {
    try { return new URL(url, window.location.href).pathname; } catch (e) { return null; }
  }

  function finish(data, hold, values) {
    var booking = data.booking;
    var manage = data.manage_url ? samePath(data.manage_url) : null;
    var section = sections.done;
    clear(section);
    var paying = data.payment && data.payment.checkout_url && booking.status !== "confirmed";
    section.appendChild(el("h1", { id: "h-done", class: "w-title", tabindex: "-1",
      text: paying ? "Complete your payment" : "Booking confirmed" }));
    if (paying) {
      section.appendChild(el("p", { class: "notice", text: "Your spots are reserved while you pay. Continue to Stripe's secure payment page; you come back to your booking afterwards." }));
    } else {
      section.appendChild(el("p", { class: "w-success", text: "Thank you, " + values.first_name + ". A confirmation is on its way to " + values.email + "." }));
    }
    section.appendChild(el("p", { class: "muted", id: "w-reference-label", text: "Your booking reference" }));
    section.appendChild(el("p", { class: "w-done-ref", id: "w-reference", "aria-describedby": "w-reference-label", text: booking.reference }));
    section.appendChild(el("dl", { class: "facts w-summary" }, [
      el("dt", { text: "Activity" }), el("dd", { text: state.activity.name }),
      el("dt", { text: "Date" }), el("dd", { text: longDate(localDay(hold.session.start_time)) }),
      el("dt", { text: "Time" }), el("dd", { text: clock(hold.session.start_time) + " " + zoneName(hold.session.start_time) + " (" + TZ + ")" }),
      el("dt", { text: "Party size" }), el("dd", { text: plural(booking.guest_count, "person", "people") }),
      booking.promo_discount ? el("dt", { text: "Discount" }) : null,
      booking.promo_discount ? el("dd", { text: "\u2212" + money(booking.promo_discount, booking.currency) + " (" + booking.promo_code + ")" }) : null,
      el("dt", { text: "Total" }), el("dd", { text: money(booking.total_amount, booking.currency) }),
      el("dt", { text: "Payment" }), el("dd", { text: paying ? "Card, on the next page" : "At the venue" })
    ]));
    var actions = el("div", { class: "w-actions" });
    if (paying) {
      actions.appendChild(el("a", { class: "button", href: data.payment.checkout_url, target: "_top", rel: "noopener", text: "Continue to payment" }));
    } else if (manage) {
      actions.appendChild(el("a", { class: "button", href: manage + "/booking.ics", download: "booking-" + booking.reference + ".ics",
        text: "Add to calendar (.ics)" }));
    }
    if (manage) {
      actions.appendChild(el("a", { class: "button secondary", href: manage, target: "_blank", rel: "noopener",
        text: "View or cancel your booking" }));
    }
    section.appendChild(actions);
    if (!paying) {
      section.appendChild(el("p", { class: "hint", text: "Keep the reference: with your email it finds your booking at any time." }));
      section.appendChild(el("button", { type: "button", class: "w-back", text: "Book something else", onclick: function () {
        state.customer = null; backToActivities();
      } }));
    }
    showStep("done");
    if (paying) { goToPayment(data.payment.checkout_url); }
  }

  /** Stripe Checkout cannot be framed: the whole page goes there (or a new tab if that is refused). */
  function goToPayment(url) {
    try {
      window.top.location.href = url;
      return;
    } catch (e) { /* a sandboxed frame without top navigation */ }
    var opened = null;
    try { opened = window.open(url, "_blank", "noopener"); } catch (e) { opened = null; }
    if (!opened) { announce("Use the Continue to payment button to pay."); }
  }
})();
