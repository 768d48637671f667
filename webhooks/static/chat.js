// The chat box: send the form with fetch and insert the HTML the server renders (it escapes everything), so the
// page needn't reload. Without this script the same forms post normally and the server answers with a whole page.
"use strict";
(() => {
  const form = document.getElementById("chat-form");
  const log = document.getElementById("chat-log");
  if (!form || !log) return;
  const input = document.getElementById("chat-input");

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = { error: `The server answered ${response.status}. Reload the page and try again.` };
    }
    if (!response.ok || data.error) throw new Error(data.error || `The server answered ${response.status}.`);
    return data.html;
  }

  function say(text) {
    const li = document.createElement("li");
    li.className = "bot error";
    li.setAttribute("role", "alert");
    li.textContent = text;
    log.append(li);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true" || !input.value.trim()) return;
    form.setAttribute("aria-busy", "true");
    try {
      log.insertAdjacentHTML("beforeend", await post(form.action, new FormData(form)));
      input.value = "";
    } catch (error) {
      say(error.message);
    } finally {
      form.removeAttribute("aria-busy");
      input.focus();
    }
  });

  // Confirm and Cancel under a proposal: replace the proposal with what the server says happened.
  log.addEventListener("submit", async (event) => {
    const target = event.target;
    if (!(target instanceof HTMLFormElement)) return;
    event.preventDefault();
    const item = target.closest("li.proposal");
    for (const button of item.querySelectorAll("button")) button.disabled = true;
    try {
      item.outerHTML = await post(target.action, new FormData(target));
    } catch (error) {
      for (const button of item.querySelectorAll("button")) button.disabled = false;
      say(error.message);
    }
  });
})();
