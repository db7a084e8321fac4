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

function zoneLabel() {
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return /^(Etc\/)?(UTC|GMT)$/.test(name) ? "UTC" : `${name}, ${utcOffset(new Date())}`;
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
  const zone = zoneLabel();
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

// The delivery log says "3 min ago" (or "in 4 min" for a retry) beside each time it gives
// exactly: the <time> keeps the exact time for screen readers (app.css hides it from the eye),
// and the words show it on hover. Refreshed every half minute.
function relativeText(date, now) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  const span = Math.abs(seconds);
  if (span < 45) return seconds > 0 ? "in a few seconds" : "just now";
  const [count, unit] = span < 5400 ? [Math.round(span / 60), "min"]
    : span < 129600 ? [Math.round(span / 3600), "h"]
    : [Math.round(span / 86400), "days"]; // from 36 h: 2 days or more
  return seconds > 0 ? `in ${count} ${unit}` : `${count} ${unit} ago`;
}

function showRelative(root) {
  const now = Date.now();
  for (const time of root.querySelectorAll("time[data-ago]")) {
    const date = new Date(time.dateTime);
    if (Number.isNaN(date.getTime()) || time.hasAttribute("data-local")) continue;
    let words = time.nextElementSibling;
    if (!words || !words.classList.contains("ago")) {
      words = document.createElement("span");
      words.className = "ago";
      words.setAttribute("aria-hidden", "true");
      time.after(words);
      time.classList.add("exact");
    }
    words.title = `${time.textContent} (${zoneLabel()})`;
    const due = time.dataset.ago === "until" && date.getTime() <= now;
    words.textContent = due ? "due now" : relativeText(date, now);
  }
}

// The log's From and To are wall-clock times too, each sent with its own offset from UTC (the
// two may lie on either side of a change to daylight saving time).
function sendOffsets(form) {
  for (const input of form.querySelectorAll("input[type=datetime-local][data-offset]")) {
    const offset = form.querySelector(`input[name="${input.dataset.offset}"]`);
    const picked = new Date(input.value);
    if (offset) offset.value = Number.isNaN(picked.getTime()) ? "" : String(-picked.getTimezoneOffset());
  }
}

function showCopyButtons(root) {
  if (!navigator.clipboard) return;
  for (const button of root.querySelectorAll("button[data-copy]")) button.hidden = false;
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

// The Selected Channels dialog ticks into a working copy of the selection (#pending-selection,
// outside the form); CONFIRM copies it into the form's #selection-inputs, which SUBMIT sends and
// the summary shows. Cancel, the close button and Escape close it without, so the summary is
// always what SUBMIT saves.
function pick(checkbox) {
  const inputs = document.getElementById("pending-selection");
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

function copySelection(from, to) {
  const inputs = from.querySelectorAll("input[name=selected]");
  to.replaceChildren(...[...inputs].map((input) => input.cloneNode()));
}

function openChannels() {
  copySelection(document.getElementById("selection-inputs"), document.getElementById("pending-selection"));
  document.getElementById("channel-results").replaceChildren(); // ticks of a cancelled opening
  document.getElementById("channel-dialog").showModal();
  htmx.trigger("#device-search", "open-dialog");
}

function closeChannels(apply) {
  if (apply) {
    copySelection(document.getElementById("pending-selection"), document.getElementById("selection-inputs"));
    renderSelection();
  }
  document.getElementById("channel-dialog").close();
  document.getElementById("open-channels").focus();
}

// A device's channel rows on the organisation page, as the subscription form's header rows.
function addChannelRow() {
  const rows = document.getElementById("channel-rows");
  const token = `new${Date.now()}`;
  const html = document.getElementById("channel-row-template").innerHTML.replaceAll("__row__", token);
  rows.insertAdjacentHTML("beforeend", html);
  rows.lastElementChild.querySelector("input:not([type=hidden])").focus();
}

function removeChannelRow(button) {
  const row = button.closest(".channel-row");
  const next = row.nextElementSibling || row.previousElementSibling;
  row.remove();
  // a stored channel's key is read-only: its name is the first input to change
  (next ? next.querySelector("input:not([type=hidden]):not([readonly])") : document.getElementById("add-channel")).focus();
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
    openChannels();
  } else if (target.id === "confirm-channels" || target.id === "cancel-channels" || target.id === "close-channels") {
    closeChannels(target.id === "confirm-channels");
  } else if (target.id === "add-channel") {
    addChannelRow();
  } else if (target.classList.contains("remove-channel")) {
    removeChannelRow(target);
  }
});

// A click anywhere outside an open menu closes it (a click inside is the menu's own).
document.addEventListener("click", (event) => {
  for (const menu of document.querySelectorAll("details.menu[open]")) {
    if (!menu.contains(event.target)) menu.removeAttribute("open");
  }
});

document.addEventListener("change", (event) => {
  if (event.target.classList.contains("pick")) pick(event.target);
  // requestSubmit, not submit: the submit listener below fills in the offsets of times
  else if (event.target.matches("select[data-submit-on-change]")) event.target.form.requestSubmit();
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
  else {
    sendOffset(event.target);
    sendOffsets(event.target);
  }
});

// The log's filter form leaves out what was left empty, so that its address says only what is
// asked for (formdata does not bubble: listened for on its way down).
document.addEventListener("formdata", (event) => {
  if (!event.target.matches("form.log-filters")) return;
  for (const [name, value] of [...event.formData.entries()]) {
    if (value === "") event.formData.delete(name);
  }
}, true);

// "Show more" in the channel dialog replaced itself with the next results: go on from the first.
document.addEventListener("htmx:afterSettle", () => {
  const first = document.querySelector("#channel-results [data-first-new]");
  if (!first) return;
  first.removeAttribute("data-first-new");
  const box = first.querySelector("input");
  if (box) box.focus();
});

document.addEventListener("htmx:load", (event) => {
  localizeTimes(event.target);
  showRelative(event.target);
  showCopyButtons(event.target);
  // Reveal and Hide replace the secret with their own button: focus goes to the one now there
  if (event.target.id === "secret") event.target.querySelector("button[type=submit]").focus();
});
setInterval(() => showRelative(document), 30_000);

// Escape closes the channel dialog as Cancel does, also from its search box (where the browser
// would only clear the text), and closes an open menu, the focus back on the menu's button.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const dialog = document.getElementById("channel-dialog");
  if (dialog && dialog.open) {
    event.preventDefault();
    closeChannels(false);
    return;
  }
  for (const menu of document.querySelectorAll("details.menu[open]")) {
    menu.removeAttribute("open");
    menu.querySelector("summary").focus();
  }
});

// A form starts at its first field in error, or else where it says (the subscription form's
// Target URL).
document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main");
  if (!main) return;
  const start = main.querySelector("[aria-invalid=true]") || main.querySelector("[data-autofocus]");
  if (start) start.focus();
});

document.addEventListener("DOMContentLoaded", () => {
  showCopyButtons(document);
  renderSelection();
  localizeTimes(document);
  showRelative(document);
});
