// While a verification call is under way, ask the server how it is going; move on by
// itself when the call approves. Without JavaScript the Continue button does the same.
(function () {
  "use strict";
  var form = document.getElementById("phone-form");
  var box = document.getElementById("call-status");
  if (!form || !box) { return; }
  var url = form.getAttribute("data-status-url");
  var lastStatus = null;
  var finished = false;
  var PERIOD = 1500;
  // Move on once: a second Continue (or a reload racing it) would post to a finished flow.
  function proceed() {
    if (finished) { return; }
    finished = true;
    var button = document.getElementById("call-continue");
    if (button) { button.click(); }
  }
  function ended() {
    if (finished) { return; }
    finished = true;
    // The call ended: show the page again with a GET. reload() would re-send the POST
    // that placed the call, and so place another call.
    window.location.replace(window.location.pathname);
  }
  if (box.getAttribute("data-approved") === "1") { proceed(); return; }
  // One request at a time: the next poll is scheduled only when this one has answered, so
  // a slow server never sees overlapping polls (nor the page two approvals).
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.approved) { proceed(); return; }
        if (!data.open) { ended(); return; }
        if (data.status !== lastStatus) {
          lastStatus = data.status;
          document.getElementById("call-message").textContent = data.message;
        }
        window.setTimeout(poll, PERIOD);
      })
      .catch(function () { window.setTimeout(poll, PERIOD); });  // a network blip
  }
  window.setTimeout(poll, PERIOD);
}());
