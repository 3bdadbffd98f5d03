// couchfarm ui: confirmations for writes and a live check of the JSON being edited. No inline
// script anywhere (the Content-Security-Policy allows scripts from this server only).
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
  document.querySelectorAll("textarea[data-json]").forEach(function (area) {
    var status = document.getElementById("json-status");
    var check = function () {
      var text = area.value;
      var message = "";
      try {
        var value = JSON.parse(text);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          message = "not a JSON object";
        } else {
          var reserved = Object.keys(value).filter(function (k) { return k.charAt(0) === "_"; });
          if (reserved.length) { message = "members starting with '_' are reserved: " + reserved.join(", "); }
        }
      } catch (err) {
        message = "not valid JSON: " + err.message;
      }
      if (status) {
        status.textContent = message || "valid JSON object";
        status.className = "json-status " + (message ? "bad" : "good");
      }
    };
    area.addEventListener("input", check);
    check();
  });
})();
