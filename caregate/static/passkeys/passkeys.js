// Passkeys: run the WebAuthn ceremony the page's options describe, then post its result
// with the form (and so with the form's CSRF token). The options come from the server as
// JSON in <script type="application/json" id="passkey-options">; binary fields are
// base64url, as WebAuthn level 3's JSON forms have them.
(function () {
  "use strict";
  var form = document.querySelector("form[data-passkey]");
  var optionsNode = document.getElementById("passkey-options");
  if (!form || !optionsNode) { return; }
  var mode = form.getAttribute("data-passkey"); // "create" or "get"
  var errorNode = document.getElementById("passkey-error");
  var button = form.querySelector("button[type=submit]");

  function showError(text) {
    errorNode.textContent = text;
    errorNode.hidden = false;
    errorNode.setAttribute("tabindex", "-1"); // focusable, so a screen reader hears it
    errorNode.focus();
  }

  if (!window.PublicKeyCredential || !navigator.credentials) {
    document.getElementById("passkey-unsupported").hidden = false;
    button.disabled = true;
    return;
  }

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var raw = window.atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i += 1) { raw += String.fromCharCode(bytes[i]); }
    return window.btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return { type: item.type, id: toBuffer(item.id), transports: item.transports };
    });
  }

  // By hand rather than PublicKeyCredential.parse*OptionsFromJSON: older browsers lack it.
  function publicKeyOptions(json) {
    var options = Object.assign({}, json, { challenge: toBuffer(json.challenge) });
    if (mode === "create") {
      options.user = Object.assign({}, json.user, { id: toBuffer(json.user.id) });
      options.excludeCredentials = descriptors(json.excludeCredentials);
    } else {
      options.allowCredentials = descriptors(json.allowCredentials);
    }
    return options;
  }

  function asJSON(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (mode === "create") {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) { out.response.userHandle = toText(response.userHandle); }
    }
    return out;
  }

  function explain(error) {
    if (error && error.name === "InvalidStateError") {
      return "This device already has a passkey for your account.";
    }
    if (error && error.name === "NotAllowedError") {
      return "The passkey was not used: it was cancelled, timed out, or this device has " +
        "no passkey for this site. Select the button to try again.";
    }
    return "Your browser could not use a passkey here. Please try again, or use another way.";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = form.querySelector("input[name=name]");
    if (mode === "create" && name && !name.value.trim()) {
      form.submit(); // the server says what is missing
      return;
    }
    button.disabled = true;
    var options = { publicKey: publicKeyOptions(JSON.parse(optionsNode.textContent)) };
    var ceremony = mode === "create"
      ? navigator.credentials.create(options)
      : navigator.credentials.get(options);
    ceremony.then(function (credential) {
      form.querySelector("input[name=credential]").value = JSON.stringify(asJSON(credential));
      form.submit();
    }).catch(function (error) {
      button.disabled = false;
      showError(explain(error));
    });
  });
}());
