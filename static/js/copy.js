// Copy buttons beside read-only fields (invitation links, a new API token). Without JavaScript
// the buttons stay hidden and the field can still be selected and copied by hand.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    for (const button of document.querySelectorAll("[data-copy]")) {
      const field = button.parentElement.querySelector("[data-copy-source]");
      if (!field || !navigator.clipboard) continue;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(field.value).then(function () {
          button.textContent = "Copied";
        });
      });
    }
    for (const field of document.querySelectorAll("[data-copy-source]")) {
      field.addEventListener("focus", function () { field.select(); });
    }
  });
})();
