// What a turn shows besides its blocks: the approval card of a tool call that waits for
// the person, the Changes panel (files, +/- counts, a diff each, Undo / Re-apply), and
// its usage (tokens, model calls, model time, cost).

import { duration, h } from "./dom.js";
import { approvalBody, unifiedDiff } from "./tools.js";

const STATUS_LETTER = { added: "A", modified: "M", deleted: "D" };

/**
 * The card of a call waiting for the person, with the exact command or diff.
 * @param {object} turn  its pendingApproval is shown
 * @param {object} actions  answer(turnId, callId, decision), answering(callId)
 */
export function approvalCard(turn, actions) {
  const a = turn.pendingApproval;
  const busy = actions.answering(a.callId);
  const answer = (decision) => () => actions.answer(turn.id, a.callId, decision);
  const who = a.agentId ? "A subagent wants to run" : "The agent wants to run";
  return h(
    "section.approval-card",
    { role: "group", "aria-label": `Approval needed: ${a.name}`, dataset: { callId: a.callId, tool: a.name } },
    h("div.approval-head", null,
      h("strong", null, "Approval needed"), " · ", who, " ", h("code.tool-name", null, a.name),
      a.server ? h("span.chip.server", { title: `A tool of the MCP server "${a.server}"` }, a.server) : null),
    h("div.approval-body", null, approvalBody(a.name, a.parameters)),
    h("div.approval-actions", null,
      h("button.primary.approval-allow", { type: "button", disabled: busy, onclick: answer("allow") }, "Allow"),
      h("button.approval-session", {
        type: "button", disabled: busy, onclick: answer("allow-session"),
        title: `Allow every ${a.name} call for the rest of this session`,
      }, "Allow for session"),
      h("button.danger.approval-deny", { type: "button", disabled: busy, onclick: answer("deny") }, "Deny"),
      busy ? h("span.muted", null, "Sending…") : null),
  );
}

function count(n) {
  return Number.isFinite(n) ? n : 0;
}

/**
 * The Changes panel of a turn that reported its changes (none when it changed nothing).
 * @param {object} actions  revert(turnId), reverting(turnId), undoBlocker() ("" when Undo may run)
 */
export function changesPanel(turn, actions) {
  const changes = turn.changes;
  if (!changes?.length) return null;
  const added = changes.reduce((n, c) => n + count(c.additions), 0);
  const removed = changes.reduce((n, c) => n + count(c.deletions), 0);
  const conflicted = new Map(turn.conflicts.map((c) => [c.path, c.reason]));
  const blocker = actions.undoBlocker();
  const busy = actions.reverting(turn.id);
  const files = `${changes.length} file${changes.length === 1 ? "" : "s"}`;
  return h(
    "section.turn-changes",
    { "aria-label": "Changes of this turn", dataset: { reverted: String(turn.reverted) } },
    h("div.changes-head", null,
      h("h4", null, "Changes"),
      h("span.changes-total.muted", null, `${files} · `, h("span.plus", null, `+${added}`), " ", h("span.minus", null, `−${removed}`)),
      turn.reverted ? h("span.chip.undone", null, "undone") : null,
      h("span.spacer"),
      h("button.small.changes-undo", {
        type: "button",
        disabled: Boolean(blocker) || busy,
        title: blocker || (turn.reverted ? "Put this turn's changes back" : "Restore every file this turn changed"),
        onclick: () => actions.revert(turn.id),
      }, busy ? "Working…" : turn.reverted ? "Re-apply" : "Undo turn")),
    h("ul.change-list", null, changes.map((c) => changeItem(c, conflicted.get(c.path)))),
    turn.conflicts.length ? conflictNote(turn) : null,
  );
}

function changeItem(change, conflict) {
  const letter = STATUS_LETTER[change.status] ?? "?";
  return h(
    "li.change",
    { dataset: { path: change.path, status: change.status, conflict: conflict ?? null } },
    h("details", null,
      h("summary", null,
        h(`span.change-status.${change.status}`, { title: change.status }, letter),
        h("span.change-path", null, change.path),
        h("span.plus", null, `+${count(change.additions)}`),
        h("span.minus", null, `−${count(change.deletions)}`),
        conflict !== undefined ? h("span.chip.warn", { title: conflict }, "not restored") : null),
      change.diff
        ? unifiedDiff(change.diff, `Diff of ${change.path}`)
        : h("p.muted.change-nodiff", null, "No diff to show (a binary file, or the drone sent none).")),
  );
}

function conflictNote(turn) {
  const what = turn.reverted ? "undone" : "re-applied";
  return h("div.changes-conflicts", { role: "note" },
    `Not ${what}: changed since this turn (by you or a later turn), so left as it is:`,
    h("ul", null, turn.conflicts.map((c) => h("li", null, h("code", null, c.path), c.reason ? ` — ${c.reason}` : ""))));
}

/** "1,234 in · 567 out tokens · 3 model calls (4.2 s) · $0.0123", or "" before any call
 * (tokens only when the model reported them, the cost only when the drone has prices). */
export function usageText(usage) {
  if (!usage?.modelCalls) return "";
  const n = (v) => v.toLocaleString("en");
  const took = usage.durationMs ? ` (${duration(usage.durationMs)})` : "";
  const parts = [];
  // A model that reports no usage: its calls are counted, its tokens are not known.
  if (usage.promptTokens || usage.completionTokens) {
    parts.push(`${n(usage.promptTokens)} in · ${n(usage.completionTokens)} out tokens`);
  }
  parts.push(`${n(usage.modelCalls)} model call${usage.modelCalls === 1 ? "" : "s"}${took}`);
  if (usage.cost !== null) parts.push(money(usage.cost));
  return parts.join(" · ");
}

/** A cost in dollars: small ones with four decimals. */
export function money(cost) {
  return `$${cost.toFixed(cost > 0 && cost < 0.1 ? 4 : 2)}`;
}

/** Usage summed over turns (the session's totals). */
export function totalUsage(turns) {
  const sum = { promptTokens: 0, completionTokens: 0, modelCalls: 0, durationMs: 0, cost: null };
  for (const { usage } of turns) {
    sum.promptTokens += usage.promptTokens;
    sum.completionTokens += usage.completionTokens;
    sum.modelCalls += usage.modelCalls;
    sum.durationMs += usage.durationMs;
    if (usage.cost !== null) sum.cost = (sum.cost ?? 0) + usage.cost;
  }
  return sum;
}
