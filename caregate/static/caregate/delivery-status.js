// While the delivery worker has the code (sending, still trying), ask the server how it is
// going and say so; once it could not be delivered, show the page again (a GET: the server
// says what to do next). A text message is followed a while after it was sent, because
// Twilio may still report it undelivered. Without JavaScript a reload shows the same.
(function () {
  "use strict";
  var box = document.getElementById("delivery-status");
  if (!box) { return; }
  var url = box.getAttribute("data-url");
  var state = box.getAttribute("data-state");
  var follow = box.getAttribute("data-follow") === "sms";
  var PERIOD = 2000;
  var MAX_POLLS = 90;  // three minutes, then the page stops asking
  var polls = 0;
  function again() {
    if (polls < MAX_POLLS) { window.setTimeout(poll, PERIOD); }
  }
  // One request at a time: the next poll is scheduled only when this one has answered.
  function poll() {
    polls += 1;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.state === "failed") {
          window.location.replace(window.location.pathname);
          return;
        }
        if (data.state === "gone" || data.state === "none") { return; }
        if (data.state !== state) {
          state = data.state;
          if (data.message) {
            box.textContent = data.message;
            box.hidden = false;
          }
        }
        if (state === "sent" && !follow) { return; }
        again();
      })
      .catch(again);  // a network blip
  }
  window.setTimeout(poll, PERIOD);
}());
