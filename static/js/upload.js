// Upload page: drag and drop, and uploads in small batches so that a large selection shows
// progress and one slow batch never times out the whole upload. Without JavaScript the form
// still posts every file at once and the server renders the same results table.
(function () {
  "use strict";
  const BATCH_FILES = 8;

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    const form = document.querySelector("[data-upload-form]");
    if (!form) return;
    const input = form.querySelector("input[type=file]");
    const zone = form.querySelector("[data-dropzone]");
    const summary = form.querySelector("[data-file-summary]");
    const progress = form.querySelector("[data-progress]");
    const progressText = form.querySelector("[data-progress-text]");
    const resultsCard = document.querySelector("[data-results-card]");
    const results = document.querySelector("[data-results]");
    const resultsSummary = document.querySelector("[data-results-summary]");
    const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

    function describe() {
      const n = input.files.length;
      summary.textContent = n ? n + (n === 1 ? " file selected" : " files selected") : "";
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

    function tally() {
      const counts = { accepted: 0, duplicate: 0, rejected: 0 };
      results.querySelectorAll("tr[data-status]").forEach(function (row) {
        counts[row.dataset.status] += 1;
      });
      resultsSummary.textContent = counts.accepted + " accepted · " + counts.duplicate +
        " duplicate · " + counts.rejected + " rejected";
    }

    async function sendBatch(files) {
      const body = new FormData();
      body.append("csrfmiddlewaretoken", csrf);
      files.forEach(function (file) { body.append("files", file, file.name); });
      const response = await fetch(form.action || window.location.href, {
        method: "POST",
        body: body,
        headers: { "X-Concord-Fragment": "results" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error("The server answered " + response.status);
      results.insertAdjacentHTML("beforeend", await response.text());
    }

    form.addEventListener("submit", async function (event) {
      const files = Array.from(input.files);
      if (!files.length) return; // let the server say that a file is required
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      progress.hidden = false;
      resultsCard.hidden = false;
      results.innerHTML = "";
      let done = 0;
      try {
        for (let start = 0; start < files.length; start += BATCH_FILES) {
          const batch = files.slice(start, start + BATCH_FILES);
          progressText.textContent = "Uploading " + (done + 1) + "–" + (done + batch.length) +
            " of " + files.length + "…";
          await sendBatch(batch);
          done += batch.length;
          progress.value = Math.round((100 * done) / files.length);
          tally();
        }
        progressText.textContent = "Done: " + files.length + " files checked.";
      } catch (error) {
        progressText.textContent = "Upload stopped after " + done + " of " + files.length +
          " files (" + error.message + "). Files listed below are saved; choose the rest again.";
      } finally {
        button.disabled = false;
        input.value = "";
        describe();
      }
    });

    if (results.querySelector("tr")) tally();
  });
})();
