// The app's one script: no build step, no dependencies. Pages work without it; it adds three things.
//
// 0. A form shown again with errors puts the focus on the first field at fault.
// 1. <form data-confirm="Delete this post?"> asks before it is sent.
// 2. An element with an id and data-live-types="posts/update posts/set-generated-summary ..." is
//    refreshed when the server announces a message of one of those types on /events (server-sent
//    events): the page is fetched again and the element's contents replaced by the fresh ones.
//    With data-live-note="ID", the element with that id then says "Updated just now".
"use strict";

function focusFirstError() {
  const field = document.querySelector('main [aria-invalid="true"]');
  if (field) field.focus();
}

focusFirstError();

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

function liveRegions() {
  return Array.from(document.querySelectorAll("[data-live-types][id]"));
}

function typesOf(region) {
  return region.dataset.liveTypes.split(/\s+/).filter(Boolean);
}

async function refresh(ids) {
  const response = await fetch(window.location.href, {
    headers: { Accept: "text/html" },
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ids) {
    const current = document.getElementById(id);
    const replacement = fresh.getElementById(id);
    if (current && replacement && current.innerHTML !== replacement.innerHTML) {
      current.innerHTML = replacement.innerHTML;
      current.classList.remove("updated");
      void current.offsetWidth; // restart the highlight animation
      current.classList.add("updated");
      const note = current.dataset.liveNote && document.getElementById(current.dataset.liveNote);
      if (note) note.textContent = "Updated just now.";
    }
  }
}

function followEvents() {
  if (liveRegions().length === 0 || !("EventSource" in window)) return;
  const source = new EventSource("/events");
  // Marks the page as following (tests wait for it before changing what it shows).
  source.addEventListener("open", () => { document.documentElement.dataset.live = "open"; });
  const pending = new Set();
  let timer = null;
  source.addEventListener("message", (event) => {
    let type;
    try {
      type = JSON.parse(event.data).type;
    } catch {
      return;
    }
    for (const region of liveRegions()) {
      if (typesOf(region).includes(type)) pending.add(region.id);
    }
    if (pending.size > 0 && timer === null) {
      // Several messages often arrive together: one fetch for all of them.
      timer = window.setTimeout(() => {
        const ids = Array.from(pending);
        pending.clear();
        timer = null;
        refresh(ids).catch(() => {});
      }, 100);
    }
  });
  window.addEventListener("pagehide", () => source.close());
}

followEvents();
