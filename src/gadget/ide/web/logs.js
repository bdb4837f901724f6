// The status line, the logs drawer, the connection banner and alerts.

import { $, clock, h } from "./dom.js";

const MAX_LOGS = 1000;
const ALERT_MS = 12_000;

export class Logs {
  constructor() {
    this.count = 0;
    $("logs-toggle").addEventListener("click", () => this.toggle());
    $("logs-close").addEventListener("click", () => this.toggle(false));
    $("logs-clear").addEventListener("click", () => {
      $("log-list").replaceChildren();
      this.count = 0;
      $("log-count").textContent = "0";
    });
  }

  toggle(open = $("logs-drawer").hidden) {
    $("logs-drawer").hidden = !open;
    $("logs-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("logs-close").focus();
  }

  /** One `log(timestamp, component, level, message, metadata)` event. */
  add(timestamp, component, level, message, metadata) {
    const list = $("log-list");
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const meta = metadata == null || (typeof metadata === "object" && !Object.keys(metadata).length)
      ? null
      : h("pre.log-meta", null, typeof metadata === "string" ? metadata : JSON.stringify(metadata, null, 1));
    list.append(h(
      "li.log",
      { dataset: { level: String(level || "info").toLowerCase() } },
      h("time.muted", null, clock(timestamp)), " ",
      h("span.log-level", null, String(level || "")), " ",
      h("span.log-component.muted", null, String(component || "")), " ",
      h("span.log-message", null, String(message ?? "")),
      meta,
    ));
    while (list.childElementCount > MAX_LOGS) list.firstElementChild.remove();
    this.count += 1;
    $("log-count").textContent = String(this.count);
    if (stick) list.scrollTop = list.scrollHeight;
  }
}

/** Set the status line (aria-live) text. */
export function setStatus(text) {
  $("status-line").textContent = text;
}

/** Show or hide the connection banner; `tone` is "warn" | "ok" | "error". */
export function banner(text, tone = "warn") {
  const el = $("banner");
  el.hidden = !text;
  el.textContent = text || "";
  el.dataset.tone = tone;
}

/** A dismissible alert message (errors the user should read). */
export function alert(text, tone = "error") {
  const item = h(
    "div.alert",
    { dataset: { tone } },
    h("span", null, text),
    h("button.icon-button", { type: "button", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  $("alerts").append(item);
  setTimeout(() => item.remove(), ALERT_MS);
}
