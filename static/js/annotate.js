// The annotator's screen: keyboard shortcuts declared on the buttons (data-hotkey), ignored while
// typing; live feedback on caption rules (the server's own verdict); a heartbeat that keeps
// leases alive while the page is open; unsent captions kept across a reload. Everything it does
// the server also enforces; without JavaScript the forms still work.
(function () {
  "use strict";
  const HEARTBEAT_MS = 60000;
  const TYPING_GRACE_MS = 1000;
  let strayUntil = 0;

  function isTyping(target) {
    return target.closest("input[type=text], textarea, select, [contenteditable]") !== null;
  }

  // A key pressed in the moment between a swap and htmx binding the new task's forms would
  // otherwise submit the form natively (a full page load, lost when offline): bind it first.
  // htmx.process is a no-op on an element it has already processed.
  function bound(element) {
    if (window.htmx && element) window.htmx.process(element.closest("form") || element);
    return element;
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
    // While an input method composes (Japanese, Chinese, Korean…), Enter confirms the
    // conversion and letters are not answers: every key then belongs to the input method.
    // keyCode 229 is what browsers that do not set isComposing send for those keys.
    if (event.isComposing || event.keyCode === 229) return;
    const target = event.target;
    if (target.matches && target.matches("textarea[data-submit-on-enter]")) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        const button = target.form.querySelector("button[type=submit]");
        if (button && !button.disabled) bound(button).click();
      } else if (event.key === "Escape") {
        target.blur();
      }
      return;
    }
    if (isTyping(target) || document.querySelector("dialog[open]") && event.key !== "g") return;
    // Someone typing a caption when the next task (a pair to verify) arrived keeps typing for a
    // moment: those letters are not answers (n would mean "no match"); they join the kept text.
    const kept = document.querySelector("[data-kept-typing] q");
    if (kept && Date.now() < strayUntil && event.key.length === 1) {
      event.preventDefault();
      kept.textContent += event.key;
      strayUntil = Date.now() + TYPING_GRACE_MS;
      return;
    }
    const element = hotkeyTarget(event.key);
    if (!element) return;
    event.preventDefault();
    if (element.type === "checkbox") element.checked = !element.checked;
    else bound(element).click();
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

  // Drafts: what is typed in a caption box is kept in localStorage as it is typed, under the
  // project, task and lease it was typed for, so a reload (or a closed tab, a crash) that shows
  // the same task again puts it back. A lease is one annotator's one showing of one task: any
  // other task has another key, so a draft never lands in a different task. It is dropped once
  // the answer (or the skip) for it is taken, and after a day.
  const DRAFT_PREFIX = "concord:draft:";
  const DRAFT_MAX_AGE_MS = 24 * 3600 * 1000;
  let answered = null;

  function drafts() {
    try {
      return window.localStorage;
    } catch (error) {
      return null; // storage disabled: typing still works, drafts are not kept
    }
  }

  function draftKey(box) {
    return box && box.dataset.draft ? DRAFT_PREFIX + box.dataset.draft : null;
  }

  function draftSave(box) {
    const store = drafts();
    const key = draftKey(box);
    if (!store || !key) return;
    try {
      if (box.value) store.setItem(key, JSON.stringify({ text: box.value, at: Date.now() }));
      else store.removeItem(key);
    } catch (error) { /* full or refused: the box still holds the text */ }
  }

  function draftRead(store, key) {
    try {
      const draft = JSON.parse(store.getItem(key));
      if (draft && typeof draft.text === "string" && Date.now() - draft.at < DRAFT_MAX_AGE_MS) {
        return draft.text;
      }
    } catch (error) { /* not ours, or damaged */ }
    return null;
  }

  function draftsPrune() {
    const store = drafts();
    if (!store) return;
    const keys = [];
    for (let i = 0; i < store.length; i++) {
      const key = store.key(i);
      if (key && key.startsWith(DRAFT_PREFIX)) keys.push(key);
    }
    keys.forEach(function (key) {
      if (draftRead(store, key) === null) store.removeItem(key);
    });
  }

  // The box on screen: an empty one gets its own task's draft back; one the server filled (a
  // refused caption, an undone one) is what is kept from then on.
  function draftRestore() {
    const box = document.querySelector("[data-workspace] [data-caption-input]");
    const store = drafts();
    const key = draftKey(box);
    if (!store || !key) return;
    if (box.value) {
      draftSave(box);
      return;
    }
    const text = draftRead(store, key);
    if (!text) return;
    box.value = text;
    box.setSelectionRange(text.length, text.length);
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("input", function (event) {
    if (!event.target.matches("[data-caption-input]")) return;
    const input = event.target;
    draftSave(input);
    clearTimeout(checkTimer);
    checkTimer = setTimeout(function () { check(input); }, CHECK_DELAY_MS);
  });

  // Sending answers under real conditions. An answer's parameters are kept as first sent, so a
  // retry sends exactly that (submitting is idempotent on the server, so a retry whose first try
  // did arrive records nothing twice). A caption box empties as its caption is sent: what is
  // typed while the answer is on its way belongs to the next caption, and goes into the next
  // caption box when the page arrives (or back after the text of a refused caption), never lost.
  const RETRY_MS = [1000, 2000, 4000, 8000, 15000];
  let carried = null;

  function isAnswerForm(element) {
    return element instanceof HTMLFormElement && element.matches(".task-form, .skip, .undo");
  }

  function copyForm(formData) {
    const copy = new FormData();
    for (const [key, value] of formData) copy.append(key, value);
    return copy;
  }

  function sendStatus(text) {
    const status = document.querySelector("[data-send-status]");
    if (!status) return;
    status.textContent = text;
    status.hidden = !text;
  }

  document.addEventListener("htmx:configRequest", function (event) {
    const form = event.detail.elt;
    if (!isAnswerForm(form)) return;
    if (form._resend) {
      event.detail.parameters = copyForm(form._resend);
      // The form was checked when first sent; its caption box has emptied since.
      event.detail.errors = [];
      return;
    }
    form._resend = copyForm(event.detail.formData);
    const box = form.querySelector("[data-caption-input]");
    if (box) {
      box.value = "";
      box.dataset.sending = "true";
    }
  });

  function retry(form, why) {
    if (!form.isConnected || !form._resend) return;
    form._attempt = (form._attempt || 0) + 1;
    const delay = RETRY_MS[Math.min(form._attempt - 1, RETRY_MS.length - 1)];
    // No other answer to this task while this one is still on its way.
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    // The caption on its way is shown while it waits: its box has emptied for the next one.
    const caption = form._resend.get("caption_text");
    sendStatus(
      why + " Not sent, retrying in " + Math.round(delay / 1000) + " s…" +
      (caption ? " (your caption: “" + caption + "”)" : "")
    );
    clearTimeout(form._retryTimer);
    form._retryTimer = setTimeout(function () { resend(form); }, delay);
  }

  function resend(form) {
    if (!form.isConnected) return;
    clearTimeout(form._retryTimer);
    sendStatus("Not sent yet, retrying now…");
    htmx.trigger(form, "submit");
  }

  document.addEventListener("htmx:sendError", function (event) {
    if (isAnswerForm(event.detail.elt)) retry(event.detail.elt, "No connection.");
  });
  document.addEventListener("htmx:timeout", function (event) {
    if (isAnswerForm(event.detail.elt)) retry(event.detail.elt, "No answer from the server.");
  });
  document.addEventListener("htmx:responseError", function (event) {
    const form = event.detail.elt;
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (!isAnswerForm(form)) return;
    if (status >= 500 || status === 429) {
      retry(form, "The server could not take it just now (" + status + ").");
      return;
    }
    // Refused for good (signed out, no longer a member): retrying would not help.
    const box = form.querySelector("[data-caption-input][data-sending]");
    const sent = form._resend && form._resend.get("caption_text");
    if (box && sent) box.value = sent + (box.value ? " " + box.value : "");
    sendStatus("Not saved: the server refused it (" + status + "). Reload the page to sign in again.");
  });
  window.addEventListener("online", function () {
    document.querySelectorAll("form").forEach(function (form) {
      if (form._retryTimer && isAnswerForm(form)) resend(form);
    });
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!event.detail.shouldSwap) return;
    // An answer or skip the server took: its task's draft goes once the next page is in,
    // unless the same task comes back (a refused caption keeps its text).
    const form = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (isAnswerForm(form)) {
      const task = form.closest("[data-lease]");
      answered = draftKey(task && task.querySelector("[data-caption-input]"));
    }
    const box = document.querySelector("[data-workspace] [data-caption-input][data-sending]");
    carried = box ? { text: box.value, lease: box.closest("[data-lease]").dataset.lease } : null;
  });

  document.addEventListener("htmx:afterSwap", function () {
    const box = document.querySelector("[data-workspace] [data-caption-input]");
    const store = drafts();
    if (answered && store && answered !== draftKey(box)) store.removeItem(answered);
    answered = null;
    draftRestore();
  });

  document.addEventListener("htmx:afterSwap", function () {
    if (!carried) return;
    const typed = carried.text;
    const from = carried.lease;
    carried = null;
    if (!typed) return;
    const box = document.querySelector("[data-workspace] [data-caption-input]");
    if (box) {
      const task = box.closest("[data-lease]");
      const refused = task && task.dataset.lease === from;
      // A refused caption comes back with its text: what was typed since follows it.
      box.value = refused && box.value ? box.value + " " + typed : typed + box.value;
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
      box.dispatchEvent(new Event("input", { bubbles: true }));
      return;
    }
    const workspace = document.querySelector("[data-workspace]");
    const kept = document.createElement("div");
    kept.className = "message kept";
    kept.dataset.keptTyping = "";
    kept.append("What you typed while the answer was sent, kept for you: ");
    const quote = document.createElement("q");
    quote.textContent = typed;
    kept.append(quote);
    workspace.querySelector(".workspace-head").after(kept);
    strayUntil = Date.now() + TYPING_GRACE_MS;
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

  // Deferred: the page is parsed.
  draftsPrune();
  draftRestore();
})();
