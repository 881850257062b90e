// Upload and import pages: drag and drop, and one upload with a progress bar for the bytes sent.
// The server stores the files and answers with the job's page (a redirect), where a worker's
// progress and every file's result show. Without JavaScript the form posts the same way.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function init() {
    const form = document.querySelector("[data-upload-form]");
    if (!form) return;
    const zone = form.querySelector("[data-dropzone]");
    const input = zone.querySelector("input[type=file]");
    const summary = form.querySelector("[data-file-summary]");
    const progress = form.querySelector("[data-progress]");
    const progressText = form.querySelector("[data-progress-text]");
    const button = form.querySelector("button[type=submit]");

    function describe() {
      const n = input.files.length;
      let bytes = 0;
      Array.from(input.files).forEach(function (file) { bytes += file.size; });
      summary.textContent = n ? n + (n === 1 ? " file selected, " : " files selected, ") +
        megabytes(bytes) : "";
    }
    input.addEventListener("change", describe);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      input.files = event.dataTransfer.files;
      describe();
    });

    form.addEventListener("submit", function (event) {
      if (!form.checkValidity()) return;
      event.preventDefault();
      const request = new XMLHttpRequest();
      request.open("POST", form.action || window.location.href);
      button.disabled = true;
      progress.hidden = false;
      progress.value = 0;
      progressText.textContent = "Uploading…";
      request.upload.addEventListener("progress", function (sent) {
        if (!sent.lengthComputable) return;
        progress.value = Math.round((100 * sent.loaded) / sent.total);
        progressText.textContent = "Uploading " + megabytes(sent.loaded) + " of " +
          megabytes(sent.total) + "…";
        if (sent.loaded === sent.total) progressText.textContent = "Stored; starting the job…";
      });
      request.addEventListener("load", function () {
        if (request.status >= 200 && request.status < 300 && request.responseURL &&
            request.responseURL !== window.location.href) {
          window.location.assign(request.responseURL);  // the job's page
          return;
        }
        // The form came back with its errors: show them in place of the form.
        const page = new DOMParser().parseFromString(request.responseText, "text/html");
        const main = page.querySelector("main");
        if (main) {
          document.querySelector("main").replaceWith(main);
          init();
        } else {
          button.disabled = false;
          progressText.textContent = "The server answered " + request.status + ".";
        }
      });
      request.addEventListener("error", function () {
        button.disabled = false;
        progressText.textContent = "The upload did not reach the server; nothing was stored. " +
          "Try again.";
      });
      request.send(new FormData(form));
    });
  }

  ready(init);
})();
