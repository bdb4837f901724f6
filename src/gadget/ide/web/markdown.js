// Markdown → sanitized DOM. Model and tool output is untrusted: marked's HTML goes
// through DOMPurify before it touches the DOM, and code is highlighted afterwards
// by highlight.js, which works on text and escapes it.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import hljs from "./vendor/highlight.esm.min.js";

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    // An image would be fetched as soon as it is shown, so a prompt-injected model could
    // leak data through its URL: show images as links the user may choose to open.
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">[image: ${escapeHtml(text || href)}]</a>`;
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  // Nothing that loads by itself (same reason as images above), and no <style> or
  // style="" that could restyle or hide the IDE itself.
  FORBID_TAGS: ["img", "picture", "source", "video", "audio", "track", "style", "form", "input", "button", "textarea", "select"],
  FORBID_ATTR: ["style", "background", "poster", "srcset"],
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

hljs.configure({ ignoreUnescapedHTML: true });

/** Highlight `code` with a known `language` (no auto-detection: it is slow and often wrong). */
export function highlightInto(el, code, language) {
  const lang = language && hljs.getLanguage(language) ? language : null;
  if (!lang) {
    el.textContent = code;
    return el;
  }
  const sanitized = DOMPurify.sanitize(hljs.highlight(code, { language: lang, ignoreIllegals: true }).value);
  el.innerHTML = sanitized;
  el.classList.add("hljs", `language-${lang}`);
  return el;
}

/** Render Markdown `text` into `el` (replacing its children), sanitized and highlighted. */
export function renderMarkdown(el, text) {
  const html = marked.parse(text || "");
  el.innerHTML = DOMPurify.sanitize(html, PURIFY);
  for (const code of el.querySelectorAll("pre > code")) {
    const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
    if (match) highlightInto(code, code.textContent, match[1].toLowerCase());
  }
  return el;
}

/** A language name for a file path, for highlighting file contents and diffs. */
export function languageForPath(path) {
  const ext = /\.([A-Za-z0-9]+)$/.exec(path || "")?.[1]?.toLowerCase();
  const map = {
    py: "python", js: "javascript", mjs: "javascript", ts: "typescript", tsx: "typescript",
    jsx: "javascript", rs: "rust", go: "go", rb: "ruby", java: "java", kt: "kotlin", c: "c",
    h: "c", cc: "cpp", cpp: "cpp", hpp: "cpp", cs: "csharp", sh: "bash", bash: "bash",
    json: "json", yml: "yaml", yaml: "yaml", toml: "ini", ini: "ini", md: "markdown",
    html: "xml", xml: "xml", css: "css", scss: "scss", sql: "sql", php: "php", swift: "swift",
  };
  return ext ? map[ext] || (hljs.getLanguage(ext) ? ext : null) : null;
}
