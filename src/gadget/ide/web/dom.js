// Tiny DOM helpers. Text always goes in as text nodes: the only place that sets
// innerHTML is markdown.js, and only with DOMPurify's output.

/**
 * Create an element.
 * @param {string} tag  tag name, optionally with classes: "div.turn.active"
 * @param {object|null} attrs  attributes; `on*` functions become listeners, `dataset` an object,
 *   booleans toggle boolean attributes, null/undefined/false are skipped
 * @param {...(Node|string|number|null|undefined|false|Array)} children
 */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) el.dataset[k] = v;
    } else if (key === "class") {
      el.classList.add(...String(value).split(" ").filter(Boolean));
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (strings as text nodes), flattening arrays and skipping empties. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace all children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Shorthand for document.getElementById. */
export const $ = (id) => document.getElementById(id);

/** A short local time, e.g. "14:03:07". */
export function clock(value) {
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value ?? "");
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A short local date and time, e.g. "21 Nov, 14:03". */
export function when(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** A short local time for today ("14:03:07"), with the date for other days. */
export function moment(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return date.toDateString() === new Date().toDateString() ? clock(date.getTime()) : when(value);
}

/** A duration for people: "850 ms", "4.2 s", "3 min 5 s", "1 h 2 min". */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
