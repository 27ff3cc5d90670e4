// The schedule editor on the activity form: add and remove weekly rules and their start times.
// Without JavaScript the form offers a few empty rules and time inputs; this only adds convenience.
// Field names follow the server's: rule-<n>-days (checkboxes) and rule-<n>-times (one per time).
(function () {
  "use strict";
  var editor = document.querySelector("[data-schedule-editor]");
  if (!editor) { return; }
  var rules = editor.querySelector("[data-rules]");

  function reveal(root) {
    root.querySelectorAll("[data-add-time],[data-remove-time],[data-remove-rule],[data-add-rule]")
      .forEach(function (button) { button.hidden = false; });
  }

  function nextIndex() {
    var max = -1;
    rules.querySelectorAll("input[name^='rule-']").forEach(function (input) {
      var match = /^rule-(\d+)-/.exec(input.name);
      if (match) { max = Math.max(max, parseInt(match[1], 10)); }
    });
    return max + 1;
  }

  function renumber() {
    // Legends and labels say "Rule 1", "Rule 2"... in screen order.
    rules.querySelectorAll("[data-rule]").forEach(function (rule, i) {
      var legend = rule.querySelector("legend");
      if (legend) { legend.textContent = "Rule " + (i + 1); }
      var remove = rule.querySelector("[data-remove-rule]");
      if (remove) { remove.textContent = "Remove rule " + (i + 1); }
    });
  }

  function addTime(rule, focus) {
    var list = rule.querySelector("[data-times]");
    var rows = list.querySelectorAll("[data-time-row]");
    var template = rows[rows.length - 1];
    var row = template.cloneNode(true);
    var input = row.querySelector("input");
    var label = row.querySelector("label");
    var id = input.id.replace(/-\d+$/, "") + "-" + Date.now();
    input.value = "";
    input.id = id;
    input.removeAttribute("aria-invalid");
    label.setAttribute("for", id);
    list.appendChild(row);
    if (focus) { input.focus(); }
  }

  function addRule() {
    var all = rules.querySelectorAll("[data-rule]");
    var rule = all[all.length - 1].cloneNode(true);
    var index = nextIndex();
    rule.querySelectorAll(".error").forEach(function (e) { e.remove(); });
    rule.querySelectorAll(".has-error").forEach(function (e) { e.classList.remove("has-error"); });
    rule.querySelectorAll("[aria-describedby]").forEach(function (e) {
      if (e.tagName !== "TEXTAREA") { e.removeAttribute("aria-describedby"); }
    });
    rule.querySelectorAll("input").forEach(function (input) {
      input.name = input.name.replace(/^rule-\d+-/, "rule-" + index + "-");
      if (input.id) { input.id = input.id.replace(/^rule-\d+-/, "rule-" + index + "-"); }
      input.removeAttribute("aria-invalid");
      if (input.type === "checkbox") { input.checked = false; } else { input.value = ""; }
    });
    rule.querySelectorAll("label[for]").forEach(function (label) {
      label.setAttribute("for", label.getAttribute("for").replace(/^rule-\d+-/, "rule-" + index + "-"));
    });
    var times = rule.querySelectorAll("[data-time-row]");
    for (var i = 1; i < times.length; i++) { times[i].remove(); }
    rules.appendChild(rule);
    renumber();
    var first = rule.querySelector("input[type=checkbox]");
    if (first) { first.focus(); }
  }

  editor.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button || !editor.contains(button)) { return; }
    var rule = button.closest("[data-rule]");
    if (button.hasAttribute("data-add-rule")) {
      addRule();
    } else if (button.hasAttribute("data-add-time") && rule) {
      addTime(rule, true);
    } else if (button.hasAttribute("data-remove-time") && rule) {
      var rows = rule.querySelectorAll("[data-time-row]");
      if (rows.length > 1) {
        button.closest("[data-time-row]").remove();
      } else {
        rows[0].querySelector("input").value = "";
      }
      var left = rule.querySelector("[data-time-row] input");
      if (left) { left.focus(); }
    } else if (button.hasAttribute("data-remove-rule") && rule) {
      if (rules.querySelectorAll("[data-rule]").length > 1) {
        rule.remove();
        renumber();
      } else {
        rule.querySelectorAll("input").forEach(function (input) {
          if (input.type === "checkbox") { input.checked = false; } else { input.value = ""; }
        });
      }
      editor.querySelector("[data-add-rule]").focus();
    }
  });

  function filled(input) { return input.value !== ""; }

  function tidy() {
    // The page offers spare blank rules and times for use without JavaScript; with the buttons
    // at hand, one blank rule (when there is no other) and one blank time per empty rule suffice.
    var all = Array.prototype.slice.call(rules.querySelectorAll("[data-rule]"));
    var used = all.filter(function (rule) {
      return rule.querySelector("input[type=checkbox]:checked") || rule.querySelector(".error") ||
        Array.prototype.some.call(rule.querySelectorAll("[data-time-row] input"), filled);
    });
    all.forEach(function (rule, i) {
      if (used.indexOf(rule) < 0 && (used.length > 0 || i > 0)) { rule.remove(); }
    });
    rules.querySelectorAll("[data-rule]").forEach(function (rule) {
      var rows = Array.prototype.slice.call(rule.querySelectorAll("[data-time-row]"));
      var hasTime = rows.some(function (row) { return filled(row.querySelector("input")); });
      var keptBlank = false;
      rows.forEach(function (row) {
        if (filled(row.querySelector("input"))) { return; }
        if (hasTime || keptBlank) { row.remove(); } else { keptBlank = true; }
      });
    });
    renumber();
  }

  tidy();
  reveal(editor);
})();
