// The status line, the logs drawer, the connection banner and alerts.
//
// The drawer shows the open chat session's log records. The most recent ones are kept in
// sessionStorage per chat session, so a reload (same tab) shows them again.

import { $, clock, h } from "./dom.js";

const MAX_LOGS = 1000; // in the drawer
const KEPT_LOGS = 200; // per chat session across a reload
const KEPT_TEXT = 4000; // characters of one kept message or metadata value
const STORE_PREFIX = "gadget.logs.";
const SAVE_DELAY_MS = 300;
const ALERT_MS = 12_000;

const clip = (value) => (typeof value === "string" && value.length > KEPT_TEXT ? `${value.slice(0, KEPT_TEXT)}…` : value);

/** A log record as it is kept: `{timestamp, component, level, message, metadata}`, clipped. */
function record(timestamp, component, level, message, metadata) {
  let meta = metadata ?? null;
  if (meta && typeof meta === "object" && !Array.isArray(meta)) {
    meta = Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, clip(typeof v === "string" ? v : JSON.stringify(v))]));
  } else if (meta !== null) {
    meta = clip(typeof meta === "string" ? meta : JSON.stringify(meta));
  }
  return {
    timestamp, component: String(component ?? ""), level: String(level || "info").toLowerCase(),
    message: clip(String(message ?? "")), metadata: meta,
  };
}

/** Metadata as readable parts: the logger as a tag, a traceback folded, other keys as key: value. */
function metadataView(meta) {
  if (meta === null || meta === "" || (typeof meta === "object" && !Object.keys(meta).length)) return [null, null];
  if (typeof meta !== "object") return [null, h("div.log-meta", null, meta)];
  const { logger, exception, ...rest } = meta;
  const tag = logger ? h("span.log-logger.muted", { title: "Python logger" }, logger) : null;
  const fields = Object.entries(rest).map(([k, v]) => h("div.log-field", null, h("span.log-key", null, `${k}: `), v));
  const trace = exception
    ? h("details.log-trace", null, h("summary", null, "Traceback"), h("pre.log-meta", null, exception))
    : null;
  return [tag, fields.length || trace ? h("div.log-meta", null, fields, trace) : null];
}

function entryView(entry) {
  const [tag, meta] = metadataView(entry.metadata);
  return h(
    "li.log",
    { dataset: { level: entry.level } },
    h("time.muted", null, clock(entry.timestamp)), " ",
    h("span.log-level", null, entry.level), " ",
    h("span.log-component.muted", null, entry.component), " ",
    h("span.log-message", null, entry.message),
    tag ? [" ", tag] : null,
    meta,
  );
}

export class Logs {
  constructor() {
    this.count = 0;
    this.key = null; // the chat session whose logs are shown
    this.kept = []; // its most recent records, as stored
    this.timer = 0;
    $("logs-toggle").addEventListener("click", () => this.toggle());
    $("logs-close").addEventListener("click", () => this.toggle(false));
    $("logs-clear").addEventListener("click", () => this.clear());
    window.addEventListener("pagehide", () => this.save());
  }

  toggle(open = $("logs-drawer").hidden) {
    $("logs-drawer").hidden = !open;
    $("logs-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("logs-close").focus();
  }

  /**
   * Show the logs of `chatSession` (null: none open). Records that came before any session
   * was open (hub errors) join the first session's.
   */
  scope(chatSession) {
    if (chatSession === this.key) return;
    this.save();
    const carried = this.key === null ? this.kept : [];
    this.key = chatSession;
    $("logs-scope").textContent = chatSession ? "this session" : "no session open";
    this.kept = [...this.load(chatSession), ...carried].slice(-KEPT_LOGS);
    $("log-list").replaceChildren(...this.kept.map(entryView));
    this.setCount(this.kept.length);
    this.later();
  }

  load(chatSession) {
    if (!chatSession) return [];
    try {
      const list = JSON.parse(sessionStorage.getItem(STORE_PREFIX + chatSession) || "[]");
      return Array.isArray(list) ? list.filter((e) => e && typeof e === "object") : [];
    } catch {
      return [];
    }
  }

  save() {
    clearTimeout(this.timer);
    this.timer = 0;
    if (!this.key) return;
    try {
      sessionStorage.setItem(STORE_PREFIX + this.key, JSON.stringify(this.kept));
    } catch {
      // Storage full or disabled: the drawer still works, the logs just do not survive a reload.
    }
  }

  later() {
    if (!this.timer) this.timer = setTimeout(() => this.save(), SAVE_DELAY_MS);
  }

  clear() {
    $("log-list").replaceChildren();
    this.kept = [];
    this.setCount(0);
    this.save();
  }

  setCount(n) {
    this.count = n;
    $("log-count").textContent = String(n);
  }

  /** One `log(timestamp, component, level, message, metadata)` event. */
  add(timestamp, component, level, message, metadata) {
    const entry = record(timestamp, component, level, message, metadata);
    this.kept.push(entry);
    if (this.kept.length > KEPT_LOGS) this.kept.splice(0, this.kept.length - KEPT_LOGS);
    this.later();
    const list = $("log-list");
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(entryView(entry));
    while (list.childElementCount > MAX_LOGS) list.firstElementChild.remove();
    this.setCount(this.count + 1);
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

/** A dismissible alert message (errors the user should read); `tone` is "error" | "warn". */
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
