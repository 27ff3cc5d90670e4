/* BookingTMS widget loader. A business pastes one tag into its site:
 *   <script src="https://HOST/widget.js" data-embed-key="KEY" async></script>
 * Optional: data-target="element-id" (put the widget inside that element instead of after the tag; a
 * tag in <head> without it puts the widget at the end of <body>),
 * data-title="..." (the iframe's accessible title).
 * It inserts an iframe of https://HOST/widget/KEY and keeps it as tall as the widget's content: the
 * widget posts {type: "bookingtms:height", height} and only messages from that iframe, with the
 * widget's own origin, are believed. */
(function () {
  "use strict";
  var MARK = "data-bookingtms-loaded";

  function scriptsToLoad() {
    var current = document.currentScript;
    if (current && current.getAttribute("data-embed-key") && !current.hasAttribute(MARK)) { return [current]; }
    // currentScript is not set in some loaders: take every tag of ours not yet handled.
    var found = [];
    var all = document.querySelectorAll("script[data-embed-key]");
    for (var i = 0; i < all.length; i++) {
      if (!all[i].hasAttribute(MARK) && /\/widget\.js(\?|#|$)/.test(all[i].src || "")) { found.push(all[i]); }
    }
    return found;
  }

  function embed(script) {
    script.setAttribute(MARK, "");
    var key = (script.getAttribute("data-embed-key") || "").trim();
    if (!key) { return; }
    var origin;
    try { origin = new URL(script.src, document.baseURI).origin; } catch (e) { return; }
    var frame = document.createElement("iframe");
    frame.src = origin + "/widget/" + encodeURIComponent(key);
    frame.title = script.getAttribute("data-title") || "Book online";
    frame.className = "bookingtms-widget";
    frame.setAttribute("scrolling", "no");
    frame.style.width = "100%";
    frame.style.maxWidth = "100%";
    frame.style.border = "none";
    frame.style.display = "block";
    frame.style.height = "480px"; // until the widget reports its height
    frame.style.overflow = "hidden";

    var targetName = script.getAttribute("data-target");
    function findTarget() {
      if (!targetName) { return null; }
      var found = document.getElementById(targetName);
      if (!found) { try { found = document.querySelector(targetName); } catch (e) { found = null; } }
      return found;
    }
    function place() {
      var target = findTarget();
      var inHead = document.head && document.head.contains(script);
      if (target) { target.appendChild(frame); }
      else if (script.parentNode && !inHead) { script.parentNode.insertBefore(frame, script.nextSibling); }
      else if (document.body) { document.body.appendChild(frame); }
    }
    // An async tag may run before the rest of the page is parsed: wait for the target (or the body).
    var ready = targetName ? findTarget() : !(document.head && document.head.contains(script));
    if (!ready && document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", place);
    } else {
      place();
    }

    window.addEventListener("message", function (event) {
      if (event.origin !== origin || event.source !== frame.contentWindow) { return; }
      var data = event.data;
      if (!data || data.type !== "bookingtms:height") { return; }
      var height = Number(data.height);
      if (isFinite(height) && height > 0 && height < 20000) { frame.style.height = Math.ceil(height) + "px"; }
    });
  }

  var scripts = scriptsToLoad();
  for (var i = 0; i < scripts.length; i++) { embed(scripts[i]); }
})();
