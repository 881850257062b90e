// Caption drafts (annotate.js keeps them in localStorage under "concord:draft:") belong to the
// person who typed them: they go when that person logs out, and on any page shown to nobody
// logged in (a logout from another tab, an expired session), so the next person on this browser
// cannot read them.
(function () {
  "use strict";
  const DRAFT_PREFIX = "concord:draft:";

  function draftsClear() {
    let storage;
    try {
      storage = window.localStorage;
    } catch (blocked) {
      return; // storage disabled: there are no drafts either
    }
    Object.keys(storage)
      .filter((key) => key.startsWith(DRAFT_PREFIX))
      .forEach((key) => storage.removeItem(key));
  }

  document.addEventListener("submit", (event) => {
    if (event.target.matches("form[data-logout]")) draftsClear();
  });
  if (document.body && document.body.hasAttribute("data-anonymous")) draftsClear();
})();
