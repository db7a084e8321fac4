// labhooks web UI: header rows, the channel dialog, confirmations, times in the browser's zone,
// copying keys.
// htmx does the rest.
"use strict";

const pad = (n) => String(n).padStart(2, "0");

function utcOffset(date) {
  const minutes = -date.getTimezoneOffset();
  const abs = Math.abs(minutes);
  return `UTC${minutes < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function localText(date, seconds) {
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return `${day} ${time}${seconds ? `:${pad(date.getSeconds())}` : ""}`;
}

// The server writes times in UTC and says so; here they become the browser's own, and every
// note naming the zone names this one.
function localizeTimes(root) {
  for (const element of root.querySelectorAll("time[data-local]")) {
    const date = new Date(element.dateTime);
    if (Number.isNaN(date.getTime())) continue;
    element.title = element.textContent;
    element.textContent = localText(date, element.dataset.local === "seconds");
    element.removeAttribute("data-local");
  }
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const zone = /^(Etc\/)?(UTC|GMT)$/.test(name) ? "UTC" : `${name}, ${utcOffset(new Date())}`;
  for (const element of root.querySelectorAll(".zone-name")) element.textContent = zone;
  for (const input of root.querySelectorAll("input[type=datetime-local][data-utc]")) {
    const date = new Date(input.dataset.utc);
    input.value = localText(date, false).replace(" ", "T");
    input.removeAttribute("data-utc");
  }
}

// A datetime-local value is a wall-clock time; the server needs the offset from UTC that the
// browser's zone had at that moment (not today's: daylight saving time may differ).
function sendOffset(form) {
  const offset = form.querySelector("input[name=utc_offset]");
  const since = form.querySelector("input[type=datetime-local]");
  if (!offset || !since) return;
  const picked = new Date(since.value);
  offset.value = Number.isNaN(picked.getTime()) ? "" : String(-picked.getTimezoneOffset());
}

function renderSelection() {
  const summary = document.getElementById("selection-summary");
  if (!summary) return;
  summary.replaceChildren();
  const inputs = document.querySelectorAll("#selection-inputs input[name=selected]");
  for (const input of inputs) {
    const item = document.createElement("li");
    const event = input.value.split("|")[1];
    item.textContent = `${input.dataset.device} · ${input.dataset.channel}: ${event}`;
    summary.appendChild(item);
  }
  if (!inputs.length) {
    const item = document.createElement("li");
    item.className = "muted";
    item.textContent = "No channels selected yet.";
    summary.appendChild(item);
  }
}

function pick(checkbox) {
  const inputs = document.getElementById("selection-inputs");
  const existing = [...inputs.querySelectorAll("input[name=selected]")].find((i) => i.value === checkbox.value);
  if (checkbox.checked && !existing) {
    const input = document.createElement("input");
    Object.assign(input, { type: "hidden", name: "selected", value: checkbox.value });
    input.dataset.device = checkbox.dataset.device;
    input.dataset.channel = checkbox.dataset.channel;
    inputs.appendChild(input);
  } else if (!checkbox.checked && existing) {
    existing.remove();
  }
}

// A public key or its URL, to hand to receivers. Browsers let only secure contexts (HTTPS,
// localhost) write the clipboard, so the Copy buttons show only there; a refused write selects
// the text instead, as a click on a key does (app.css).
function copy(button) {
  const source = document.getElementById(button.dataset.copy);
  const label = button.querySelector(".copy-label");
  navigator.clipboard.writeText(source.textContent.trim()).then(
    () => {
      label.textContent = "Copied";
      setTimeout(() => { label.textContent = "Copy"; }, 2000);
    },
    () => window.getSelection().selectAllChildren(source),
  );
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.dataset.copy) {
    copy(target);
  } else if (target.id === "add-header") {
    const rows = document.getElementById("header-rows");
    const index = `new${Date.now()}`;
    const html = document.getElementById("header-row-template").innerHTML.replaceAll("__i__", index);
    rows.insertAdjacentHTML("beforeend", html);
    rows.lastElementChild.querySelector("input").focus();
  } else if (target.classList.contains("remove-header")) {
    const row = target.closest(".header-row");
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    (next ? next.querySelector("input") : document.getElementById("add-header")).focus();
  } else if (target.id === "open-channels") {
    document.getElementById("channel-dialog").showModal();
    htmx.trigger("#device-search", "open-dialog");
  } else if (target.id === "confirm-channels") {
    document.getElementById("channel-dialog").close();
    renderSelection();
    document.getElementById("open-channels").focus();
  }
});

document.addEventListener("change", (event) => {
  if (event.target.classList.contains("pick")) pick(event.target);
  else if (event.target.matches("select[data-submit-on-change]")) event.target.form.submit();
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
  else sendOffset(event.target);
});

// "Show more" in the channel dialog replaced itself with the next results: go on from the first.
document.addEventListener("htmx:afterSettle", () => {
  const first = document.querySelector("#channel-results [data-first-new]");
  if (!first) return;
  first.removeAttribute("data-first-new");
  const box = first.querySelector("input");
  if (box) box.focus();
});

document.addEventListener("htmx:load", (event) => localizeTimes(event.target));

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    for (const menu of document.querySelectorAll("details.menu[open]")) menu.removeAttribute("open");
  }
});

document.addEventListener("DOMContentLoaded", () => {
  if (navigator.clipboard) {
    for (const button of document.querySelectorAll("button[data-copy]")) button.hidden = false;
  }
  renderSelection();
  localizeTimes(document);
});
