// The annotator's screen: keyboard shortcuts declared on the buttons (data-hotkey), ignored while
// typing; live feedback on caption rules (the server's own verdict); a heartbeat that keeps
// leases alive while the page is open. Everything it does the server also enforces; without
// JavaScript the forms still work.
(function () {
  "use strict";
  const HEARTBEAT_MS = 60000;

  function isTyping(target) {
    return target.closest("input[type=text], textarea, select, [contenteditable]") !== null;
  }

  function hotkeyTarget(key) {
    const workspace = document.querySelector("[data-workspace]");
    if (!workspace) return null;
    const candidates = workspace.querySelectorAll("[data-hotkey]");
    for (const element of candidates) {
      if (element.dataset.hotkey.split(" ").includes(key) && !element.disabled) return element;
    }
    return null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches && target.matches("textarea[data-submit-on-enter]")) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        const button = target.form.querySelector("button[type=submit]");
        if (button && !button.disabled) button.click();
      } else if (event.key === "Escape") {
        target.blur();
      }
      return;
    }
    if (isTyping(target) || document.querySelector("dialog[open]") && event.key !== "g") return;
    const element = hotkeyTarget(event.key);
    if (!element) return;
    event.preventDefault();
    if (element.type === "checkbox") element.checked = !element.checked;
    else element.click();
  });

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-toggle-guidelines]");
    if (!toggle) return;
    const dialog = document.querySelector("[data-guidelines]");
    if (dialog.open) dialog.close();
    else dialog.showModal();
  });

  // The live check asks the server for its verdict on the text so far (the same function that
  // judges a submitted caption), so the page never disagrees with it in any script. Requests
  // are debounced, and an answer to text that has since changed is dropped.
  const CHECK_DELAY_MS = 120;
  let checkTimer = null;
  let checkAbort = null;

  function render(list, verdict) {
    const items = verdict.problems.map(function (problem) {
      const item = document.createElement("li");
      item.className = "error";
      item.textContent = problem;
      return item;
    });
    if (verdict.ok && verdict.summary) {
      const ok = document.createElement("li");
      ok.className = "ok";
      ok.textContent = verdict.summary;
      items.push(ok);
    }
    list.replaceChildren.apply(list, items);
    list.dataset.checked = verdict.ok ? "ok" : "problems";
  }

  function check(input) {
    const form = input.form;
    const list = form.querySelector("[data-feedback]");
    const token = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (checkAbort) checkAbort.abort();
    checkAbort = new AbortController();
    const sent = input.value;
    const body = new URLSearchParams({ caption_text: sent });
    list.dataset.checked = "pending";
    fetch(input.dataset.checkUrl, {
      method: "POST",
      headers: { "X-CSRFToken": token ? token.value : "" },
      body: body,
      credentials: "same-origin",
      signal: checkAbort.signal,
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (verdict) {
        if (verdict && input.isConnected && input.value === sent) render(list, verdict);
      })
      .catch(function () { /* aborted, or offline for a moment: submitting still checks */ });
  }

  document.addEventListener("input", function (event) {
    if (!event.target.matches("[data-caption-input]")) return;
    const input = event.target;
    clearTimeout(checkTimer);
    checkTimer = setTimeout(function () { check(input); }, CHECK_DELAY_MS);
  });

  function heartbeat() {
    const shell = document.querySelector("[data-heartbeat-url]");
    if (!shell || document.visibilityState !== "visible") return;
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!token) return;
    fetch(shell.dataset.heartbeatUrl, {
      method: "POST",
      headers: { "X-CSRFToken": token.value },
      credentials: "same-origin",
    }).catch(function () { /* offline for a moment: the next beat tries again */ });
  }
  setInterval(heartbeat, HEARTBEAT_MS);
})();
