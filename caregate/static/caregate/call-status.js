// While a verification call is under way, ask the server how it is going; move on by
// itself when the call approves. Without JavaScript the Continue button does the same.
(function () {
  "use strict";
  var form = document.getElementById("phone-form");
  var box = document.getElementById("call-status");
  if (!form || !box) { return; }
  var url = form.getAttribute("data-status-url");
  var lastStatus = null;
  function proceed() {
    var button = document.getElementById("call-continue");
    if (button) { button.click(); }
  }
  if (box.getAttribute("data-approved") === "1") { proceed(); return; }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.approved) { window.clearInterval(handle); proceed(); return; }
        if (!data.open) {
          // The call ended: show the page again with a GET. reload() would re-send the
          // POST that placed the call, and so place another call.
          window.clearInterval(handle);
          window.location.replace(window.location.pathname);
          return;
        }
        if (data.status !== lastStatus) {
          lastStatus = data.status;
          document.getElementById("call-message").textContent = data.message;
        }
      })
      .catch(function () { /* a network blip: try again at the next tick */ });
  }
  var handle = window.setInterval(poll, 1500);
}());
