// The API page (/docs): each form sends its command or query with fetch and shows the answer.
// No framework and no inline script, so the page keeps the app's Content-Security-Policy.
"use strict";

function authorization() {
  const field = document.getElementById("api-token");
  const token = field ? field.value.trim() : "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function request(form) {
  const headers = { Accept: "application/json", ...authorization() };
  if (form.dataset.try === "command") {
    headers["Content-Type"] = "application/json";
    return fetch(form.dataset.url, { method: "POST", headers, body: form.elements.body.value });
  }
  const params = new URLSearchParams();
  for (const input of form.querySelectorAll("input[name]")) {
    if (input.value !== "") params.append(input.name, input.value);
  }
  const query = params.toString();
  return fetch(query ? `${form.dataset.url}?${query}` : form.dataset.url, { headers });
}

function show(form, status, text, ok) {
  const answer = form.querySelector(".answer");
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not JSON: shown as it came
  }
  answer.querySelector(".answer-status").textContent = status;
  answer.querySelector("pre").textContent = shown;
  answer.classList.toggle("failed", !ok);
  answer.hidden = false;
}

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-try]");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await request(form);
    show(form, `${response.status} ${response.statusText}`, await response.text(), response.ok);
  } catch (error) {
    show(form, "No answer", String(error), false);
  } finally {
    button.disabled = false;
  }
});
