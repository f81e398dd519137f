// Count down the verification code's time left; the page says the same without script.
(function () {
  "use strict";
  var timer = document.getElementById("code-timer");
  // A code the server already called expired (or voided after too many wrong codes) keeps
  // the server's words: counting down its nominal lifetime would say it still works.
  if (!timer || timer.getAttribute("data-expired") === "true") { return; }
  // The server gives the time left, not the clock time of expiry: the user's PC clock may
  // be minutes off, and only the difference between two of its own readings is reliable.
  var expires = Date.now() + parseInt(timer.getAttribute("data-ms-left"), 10);
  var text = timer.querySelector(".timer-text");
  var lastShown = null;
  function tick() {
    // Rounded up: "expired" only once no time at all is left, never half a second early.
    var left = Math.max(0, Math.ceil((expires - Date.now()) / 1000));
    if (left === lastShown) { return; }
    lastShown = left;
    if (left <= 0) {
      text.textContent = "This code has expired. Select Send new code to get a new one.";
      timer.classList.add("expired");
      window.clearInterval(handle);
      return;
    }
    text.textContent = "This code expires in " + describe(left) + ".";
  }
  // The server's words for a lifetime (delivery/email.py describe_seconds): "45 seconds",
  // "10 minutes", "9 minutes and 59 seconds", never "599 seconds".
  function describe(seconds) {
    var units = [["hour", 3600], ["minute", 60], ["second", 1]];
    var parts = [];
    for (var i = 0; i < units.length; i += 1) {
      var count = Math.floor(seconds / units[i][1]);
      seconds -= count * units[i][1];
      if (count) { parts.push(count + " " + units[i][0] + (count === 1 ? "" : "s")); }
    }
    if (parts.length <= 1) { return parts[0] || "0 seconds"; }
    return parts.slice(0, -1).join(", ") + " and " + parts[parts.length - 1];
  }
  var handle = window.setInterval(tick, 500);
  tick();
}());
