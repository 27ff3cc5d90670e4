// Small progressive enhancements shared by the consoles. Every page works without them.
(function () {
  "use strict";
  // <form data-confirm="Cancel this booking?">: ask before sending.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  // <select data-autosubmit>: filters apply as soon as they change.
  document.addEventListener("change", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-autosubmit")) { event.target.form.submit(); }
  });
})();
