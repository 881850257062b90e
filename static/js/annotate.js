// The annotator's screen: keyboard shortcuts declared on the buttons (data-hotkey), ignored while
// typing; live feedback on caption rules; a heartbeat that keeps leases alive while the page is
// open. Everything it does the server also enforces; without JavaScript the forms still work.
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

  function wordCount(text) {
    const words = text.match(/[\p{L}\p{N}_]+(?:['’-][\p{L}\p{N}_]+)*/gu);
    return words ? words.length : 0;
  }

  function feedback(input) {
    const list = input.form.querySelector("[data-feedback]");
    const text = input.value.trim();
    const problems = [];
    const min = Number(input.dataset.minWords);
    const max = Number(input.dataset.maxWords);
    const count = wordCount(text);
    if (text && count < min) problems.push("Write at least " + min + " words (you have " + count + ").");
    if (count > max) problems.push("Keep it to " + max + " words (you have " + count + ").");
    const lowered = text.toLowerCase();
    (input.dataset.banned || "").split("|").filter(Boolean).forEach(function (opening) {
      const o = opening.toLowerCase();
      if (lowered === o || lowered.startsWith(o + " ")) {
        problems.push("Don't start with “" + opening + "”: describe the scene directly.");
      }
    });
    list.replaceChildren.apply(list, problems.map(function (problem) {
      const item = document.createElement("li");
      item.className = "error";
      item.textContent = problem;
      return item;
    }));
    if (!problems.length && text) {
      const ok = document.createElement("li");
      ok.className = "ok";
      ok.textContent = count + " words ✓";
      list.replaceChildren(ok);
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches("[data-caption-input]")) feedback(event.target);
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
