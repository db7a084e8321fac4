// labhooks web UI: header rows, the channel dialog, confirmations. htmx does the rest.
"use strict";

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

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.id === "add-header") {
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
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    for (const menu of document.querySelectorAll("details.menu[open]")) menu.removeAttribute("open");
  }
});

document.addEventListener("DOMContentLoaded", renderSelection);
