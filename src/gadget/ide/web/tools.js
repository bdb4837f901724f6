// Tool call cards: a collapsible card per call with name, parameters and result;
// edit_file as a diff, run_command as a terminal, subagents streaming inside; the MCP
// server and the person's approval on the card. Also what an approval card shows of a
// waiting call, and unified diffs (a turn's changes).

import { h } from "./dom.js";
import { highlightInto, languageForPath, renderMarkdown } from "./markdown.js";
import { parseJson } from "./state.js";

const MAX_DIFF_CELLS = 4_000_000;
const pick = (obj, ...keys) => (obj && typeof obj === "object" ? keys.map((k) => obj[k]).find((v) => v != null) : undefined);

/** Pretty text for any value: strings as-is, everything else as indented JSON. */
export function pretty(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

function pre(value, cls = "") {
  return h(`pre.${["mono", cls].filter(Boolean).join(".")}`, null, pretty(value));
}

function section(title, ...body) {
  return h("section.tool-section", null, h("h4", null, title), ...body);
}

/** "Edit" and a path, the path as written (headings are upper-cased). */
function fileTitle(verb, params) {
  const path = filePath(params);
  return path ? [`${verb} `, h("code.path", null, path)] : verb;
}

/** Line diff of old → new (LCS); falls back to all-removed + all-added when too large. */
export function diffLines(oldText, newText) {
  const a = (oldText ?? "").split("\n");
  const b = (newText ?? "").split("\n");
  // "x\n" splits into ["x", ""]: drop the shared empty last line.
  if (a.length > 1 && b.length > 1 && a.at(-1) === "" && b.at(-1) === "") {
    a.pop();
    b.pop();
  }
  if (a.length * b.length > MAX_DIFF_CELLS) {
    return [...a.map((t) => ({ op: "-", t })), ...b.map((t) => ({ op: "+", t }))];
  }
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: " ", t: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: "-", t: a[i++] });
    else out.push({ op: "+", t: b[j++] });
  }
  while (i < n) out.push({ op: "-", t: a[i++] });
  while (j < m) out.push({ op: "+", t: b[j++] });
  return out;
}

/** A unified diff (git's text) with added, removed and hunk lines told apart; the file
 * header before the first hunk is left out (the path is shown next to it). */
export function unifiedDiff(text, label = "Diff") {
  const lines = String(text ?? "").replace(/\n$/, "").split("\n");
  const first = lines.findIndex((line) => line.startsWith("@@"));
  if (first > 0 && lines.slice(0, first).every((line) => diffKind(line) === "meta")) lines.splice(0, first);
  return h("pre.mono.diff", { "aria-label": label }, lines.map((line) => h(`span.diff-line.${diffKind(line)}`, null, `${line}\n`)));
}

function diffKind(line) {
  if (/^(\+\+\+ |--- |diff |index |new file|deleted file|\\ )/.test(line)) return "meta";
  if (line.startsWith("@@")) return "hunk";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  return "ctx";
}

function diffView(oldText, newText) {
  const cls = { "-": "del", "+": "add", " ": "ctx" };
  return h(
    "pre.mono.diff",
    { "aria-label": "Diff of the edit" },
    diffLines(oldText, newText).map(({ op, t }) => h(`span.diff-line.${cls[op]}`, null, `${op} ${t}\n`)),
  );
}

/** The edits of an edit_file call as [{old, new}] (single or batched forms). */
function edits(params) {
  const list = Array.isArray(params?.edits) ? params.edits : [params];
  return list
    .map((e) => ({
      old: pick(e, "old", "old_string", "old_text", "oldText", "search"),
      new: pick(e, "new", "new_string", "new_text", "newText", "replace"),
    }))
    .filter((e) => e.old != null || e.new != null);
}

function filePath(params) {
  return pick(params, "path", "file_path", "filePath", "filename");
}

/**
 * A tool result as {ok, text, exit}: the drone sends {"ok", "output"}; anything else
 * (older records, other tools) is shown as it came.
 */
export function readResult(result) {
  let ok = true;
  let text;
  if (result && typeof result === "object") {
    const output = pick(result, "output", "stdout", "content", "text");
    ok = result.ok !== false && result.success !== false && !result.error;
    text = typeof output === "string" ? output : pretty(result.error ?? result);
  } else {
    text = pretty(result);
  }
  const noted = /\[exit code: (-?\d+)\]\s*$/.exec(text);
  const field = pick(result, "exit_code", "exitCode", "returncode");
  const exit = noted ? Number(noted[1]) : typeof field === "number" ? field : null;
  if (exit !== null && exit !== 0) ok = false;
  return { ok, text, exit };
}

/** The MCP server of a tool: the result says it; else the `server__tool` name does. */
function mcpServer(name, result) {
  if (result && typeof result === "object" && typeof result.server === "string") return result.server;
  const cut = typeof name === "string" ? name.indexOf("__") : -1;
  return cut > 0 ? name.slice(0, cut) : null;
}

const APPROVAL_TEXT = { allow: "allowed", deny: "denied", "allow-session": "allowed for session" };

/** The person's answer on a tool card: "allowed by ann". */
function approvalChip(approval) {
  const label = APPROVAL_TEXT[approval?.decision];
  if (!label) return null;
  const by = approval.by ? ` by ${approval.by}` : "";
  return h(`span.chip.approval.${approval.decision === "deny" ? "error" : "ok"}`, { dataset: { decision: approval.decision } }, `${label}${by}`);
}

/**
 * What a waiting call would do, as its approval card shows it: the exact command, the
 * diff of an edit, the content of a write, or the parameters.
 */
export function approvalBody(name, parameters) {
  const params = parseJson(parameters);
  if (name === "run_command" && typeof pick(params, "command") === "string") {
    const { command, ...rest } = params;
    return [
      h("pre.mono.terminal.approval-command", null, h("span.prompt-sign", null, "$ "), command),
      Object.keys(rest).length ? section("Parameters", pre(rest)) : null,
    ];
  }
  if (name === "edit_file" && edits(params).length) {
    return section(fileTitle("Edit", params), ...edits(params).map((e) => diffView(e.old, e.new)));
  }
  const content = pick(params, "content");
  if (name === "write_file" && typeof content === "string") {
    const code = highlightInto(h("code"), content, languageForPath(filePath(params)));
    return section(fileTitle("Write", params), h("pre.mono", null, code));
  }
  return section("Parameters", pre(params));
}

/** A one-line hint of what the call did, shown next to its name. */
function brief(params) {
  if (params && typeof params === "object") {
    const value = pick(params, "command", "description", "path", "pattern", "query", "prompt", "url");
    if (value != null) return String(value).split("\n")[0].slice(0, 120);
  }
  return typeof params === "string" ? params.split("\n")[0].slice(0, 120) : "";
}

function resultSection(res, title = "Result") {
  if (!res.text) return null;
  return section(title, pre(res.text, res.ok ? "result" : "result.error-text"));
}

/** Specialised bodies by tool name; null falls back to parameters + result. */
const BODIES = {
  edit_file(params, res) {
    const list = edits(params);
    if (!list.length) return null;
    return [
      section(fileTitle("Edit", params), ...list.map((e) => diffView(e.old, e.new))),
      resultSection(res),
    ];
  },
  write_file(params, res) {
    const content = pick(params, "content");
    if (typeof content !== "string") return null;
    const code = highlightInto(h("code"), content, languageForPath(filePath(params)));
    return [section(fileTitle("Write", params), h("pre.mono", null, code)), resultSection(res)];
  },
  run_command(params, res) {
    const command = pick(params, "command") ?? pretty(params);
    // The drone's output starts with "$ command"; older shapes may not.
    const text = res.text.startsWith("$ ") ? res.text : `$ ${command}\n${res.text}`;
    const [first, ...rest] = text.split("\n");
    // The exit code is in the output's last line and on the card's chip.
    return [h("pre.mono.terminal", null, h("span.prompt-sign", null, "$ "), first.slice(2), "\n", rest.join("\n"))];
  },
};

function subItem(item) {
  if (item.mode === "thinking") return h("pre.sub-thinking", null, item.text);
  if (item.mode === "responding") return renderMarkdown(h("div.markdown.sub-response"), item.text);
  const res = item.done ? readResult(item.result) : null;
  const state = !item.done ? "running" : res.ok ? "ok" : "error";
  return h(
    "details.sub-tool",
    { dataset: { state, tool: item.tool || "tool" } },
    h("summary", null,
      h("span.tool-name", null, item.tool || "tool"),
      h("code.tool-brief", null, brief(item.args)),
      h(`span.chip.${state}`, null, item.done ? (res.ok ? "done" : "error") : "running…")),
    h("div.tool-body", null, section("Parameters", pre(item.args)), res ? resultSection(res) : null),
  );
}

/** What the drone stored about a finished subagent (its summary). */
function subagentRecord(record) {
  if (!record) return null;
  const facts = [
    record.steps != null ? `${record.steps} steps` : null,
    Array.isArray(record.toolCalls) && record.toolCalls.length ? `tools: ${record.toolCalls.join(", ")}` : null,
    record.ok === false ? "stopped early" : null,
  ].filter(Boolean);
  return [
    facts.length ? h("p.muted.sub-stats", null, facts.join(" · ")) : null,
    record.prompt ? h("details.sub-record", null, h("summary", null, "Subagent prompt"), pre(record.prompt)) : null,
  ];
}

/** A subagent inside its parent's card: live items while it streams, then its record. */
function subagentView(tool) {
  const agent = tool.agent;
  const running = Boolean(agent) && !agent.complete && !tool.done;
  const record = tool.subagent;
  return h(
    "div.subagent-card",
    { dataset: { state: running ? "running" : "done", agentId: tool.callId } },
    h("div.subagent-head", null, "Subagent", record?.description ? `: ${record.description}` : "",
      running ? h("span.chip.running", null, "running…") : null),
    (agent?.items || []).map(subItem),
    subagentRecord(record),
  );
}

/**
 * Build the card for one tool call.
 * @param {object} tool  a Tool from state.js
 * @param {boolean} open  whether the card starts expanded
 */
export function toolCard(tool, open) {
  const params = parseJson(tool.parameters);
  const result = tool.done ? parseJson(tool.response) : null;
  const res = tool.done ? readResult(result) : null;
  const name = tool.name || (tool.agent ? "task" : "tool");
  const refused = result?.refused === true; // denied by the person, or by read-only mode
  const server = mcpServer(name, result);
  const state = !res ? "running" : refused ? "refused" : res.ok ? "ok" : "error";
  const chip = !res ? "running…" : refused ? "refused" : res.exit !== null ? `exit ${res.exit}` : res.ok ? "done" : "error";
  const hasAgent = Boolean(tool.agent || tool.subagent);

  let body = res ? BODIES[name]?.(params, res) : null;
  if (!body) {
    body = [
      tool.parameters !== null ? section("Parameters", pre(params)) : null,
      res ? resultSection(res, hasAgent ? "Answer" : "Result") : null,
    ];
  }
  return h(
    "details.tool-card",
    { open, dataset: { callId: tool.callId, tool: name, state, server } },
    h("summary", null,
      h("span.tool-name", null, name),
      server ? h("span.chip.server", { title: `A tool of the MCP server "${server}"` }, server) : null,
      h("code.tool-brief", null, brief(params)),
      approvalChip(tool.approval),
      h(`span.chip.${state === "refused" ? "error" : state}`, { dataset: { exit: res?.exit ?? null } }, chip)),
    h("div.tool-body", null, hasAgent ? subagentView(tool) : null, body),
  );
}
