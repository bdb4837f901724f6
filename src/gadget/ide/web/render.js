// Renders turns into the conversation pane. Each turn keeps a cache of the block and
// tool objects it last drew; since the reducer never mutates, an unchanged object
// means an unchanged element, so a streamed delta redraws only the block it touched
// (the approval card, the Changes panel and the footer likewise redraw on their own).

import { duration, h, replaceChildren, when } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { approvalCard, changesPanel, usageText } from "./panels.js";
import { Status } from "./state.js";
import { toolCard } from "./tools.js";

function retryDivider(attempt) {
  return h("div.retry-divider", { role: "separator" }, `retried — attempt ${attempt}`);
}

function thinkingBlock() {
  const el = h(
    "details.block.block-thinking",
    null,
    h("summary", null, "Thinking"),
    h("div.thinking-text"),
  );
  // Once the user opens or closes it, stop auto-collapsing it.
  el.querySelector("summary").addEventListener("click", () => {
    el.dataset.userToggled = "1";
  });
  return el;
}

/** One turn's DOM and the state it was last drawn from. */
class TurnView {
  constructor(turn) {
    this.prompt = h("div.prompt-text");
    this.meta = h("span.turn-time.muted");
    this.blocksEl = h("div.turn-blocks");
    this.approvalEl = h("div.turn-approval");
    this.changesEl = h("div.turn-changes-slot");
    this.footer = h("div.turn-footer");
    this.el = h(
      "article.turn",
      { dataset: { turnId: turn.id }, "aria-label": "Turn" },
      h("div.turn-prompt", null, h("div.who", null, "You ", this.meta), this.prompt),
      this.blocksEl,
      this.approvalEl,
      this.changesEl,
      this.footer,
    );
    this.drawn = []; // [{block, tool, el}]
    this.head = null;
    this.approvalKey = null;
    this.changesKey = null;
  }

  /**
   * @param {object} turn
   * @param {object} actions  see TurnsView
   */
  update(turn, actions) {
    const usage = usageText(turn.usage);
    const waiting = Boolean(turn.pendingApproval);
    const headKey = [turn.prompt, turn.status, turn.errorMessage, turn.cancelled, turn.durationMs, turn.createdAt, usage, waiting].join("\u0000");
    if (headKey !== this.head) {
      this.head = headKey;
      // A cancelled turn is "error" on the wire; on screen it is its own, neutral state.
      this.el.dataset.status = turn.cancelled ? "cancelled" : turn.status;
      this.prompt.textContent = turn.prompt;
      this.meta.textContent = turn.createdAt ? when(turn.createdAt) : "";
      this.drawFooter(turn, usage);
    }
    turn.blocks.forEach((block, i) => this.drawBlock(turn, block, i));
    for (const stale of this.drawn.splice(turn.blocks.length)) stale.el.remove();
    this.autoCollapse(turn);
    this.drawApproval(turn, actions);
    this.drawChanges(turn, actions);
  }

  drawFooter(turn, usage) {
    const took = duration(turn.durationMs);
    const spent = usage ? h("span.turn-usage.muted", { title: "Tokens, model calls, model time and cost of this turn" }, usage) : null;
    if (turn.status === Status.PROCESSING) {
      const doing = turn.pendingApproval ? "Waiting for your approval…" : "Working…";
      replaceChildren(this.footer, h("span.working", { "aria-hidden": "true" }), h("span.muted", null, doing), spent);
    } else if (turn.cancelled) {
      replaceChildren(this.footer, h("span.turn-cancelled", null, took ? `Cancelled after ${took}` : "Cancelled"), spent);
    } else if (turn.status === Status.ERROR) {
      replaceChildren(this.footer, h("div.turn-error", null, h("strong", null, "Turn failed: "), turn.errorMessage || "unknown error"), spent);
    } else {
      replaceChildren(this.footer, took ? h("span.turn-done.muted", null, `Finished in ${took}`) : null, spent);
    }
  }

  drawApproval(turn, actions) {
    const waiting = turn.pendingApproval;
    const key = waiting ? [waiting, actions.answering(waiting.callId)] : null;
    if (key?.[0] === this.approvalKey?.[0] && key?.[1] === this.approvalKey?.[1]) return;
    this.approvalKey = key;
    replaceChildren(this.approvalEl, waiting ? approvalCard(turn, actions) : null);
  }

  drawChanges(turn, actions) {
    const key = [turn.changes, turn.reverted, turn.conflicts, actions.undoBlocker(), actions.reverting(turn.id)];
    if (this.changesKey && key.every((v, i) => v === this.changesKey[i])) return;
    this.changesKey = key;
    replaceChildren(this.changesEl, changesPanel(turn, actions));
  }

  drawBlock(turn, block, i) {
    const tool = block.kind === "tool" ? turn.tools[block.callId] : null;
    const prev = this.drawn[i];
    if (prev && prev.block === block && prev.tool === tool) return;
    const sameKind = prev && prev.block.kind === block.kind && prev.block.mode === block.mode;

    if (sameKind && block.kind === "text") {
      this.fillText(prev.el, block);
      prev.block = block;
      return;
    }
    let el;
    if (block.kind === "tool") {
      const wasOpen = sameKind ? prev.el.querySelector(":scope > .tool-card")?.open : undefined;
      const card = toolCard(tool, wasOpen ?? Boolean(tool.agent && !tool.done));
      card.classList.add("block");
      el = h("div.block-wrap", null, card);
    } else {
      el = h("div.block-wrap", null, block.mode === "thinking" ? thinkingBlock() : h("div.block.block-responding.markdown"));
      this.fillText(el, block);
    }
    const before = i > 0 ? turn.blocks[i - 1].attempt : 1;
    if (block.attempt > before) el.prepend(retryDivider(block.attempt));
    if (prev) prev.el.replaceWith(el);
    else this.blocksEl.append(el);
    this.drawn[i] = { block, tool, el };
  }

  fillText(wrap, block) {
    if (block.mode === "thinking") {
      wrap.querySelector(".thinking-text").textContent = block.text;
    } else {
      renderMarkdown(wrap.querySelector(".block-responding"), block.text);
    }
  }

  /** Thinking is open while it is the live edge of a running turn, then folds away. */
  autoCollapse(turn) {
    const last = turn.blocks.length - 1;
    this.drawn.forEach(({ block, el }, i) => {
      if (block.kind !== "text" || block.mode !== "thinking") return;
      const details = el.querySelector(".block-thinking");
      if (details.dataset.userToggled) return;
      details.open = i === last && turn.status === Status.PROCESSING;
    });
  }
}

/** The conversation pane: draws turns in order and keeps the view pinned to the bottom. */
export class TurnsView {
  /**
   * @param {HTMLElement} container
   * @param {object} actions  answer(turnId, callId, decision), answering(callId),
   *   revert(turnId), reverting(turnId), undoBlocker() (why Undo cannot run now, or "")
   */
  constructor(container, actions) {
    this.container = container;
    this.actions = actions;
    this.views = new Map();
    this.hint = null;
  }

  clear() {
    this.views.clear();
    this.container.replaceChildren();
  }

  /** Show `node` (a hint) when there are no turns. */
  setHint(node) {
    this.hint = node;
  }

  /**
   * Draw `turns` (in display order).
   * @param {string|null} reveal  a turn just sent: scroll to the end to show it, wherever the
   *   reader was (from then on the view follows the stream as usual)
   */
  render(turns, reveal = null) {
    const c = this.container;
    const pinned = c.scrollHeight - c.scrollTop - c.clientHeight < 80 || turns.some((t) => t.id === reveal);
    const ids = new Set(turns.map((t) => t.id));
    for (const [id, view] of this.views) {
      if (!ids.has(id)) {
        view.el.remove();
        this.views.delete(id);
      }
    }
    let cursor = null;
    for (const turn of turns) {
      let view = this.views.get(turn.id);
      if (!view) {
        view = new TurnView(turn);
        this.views.set(turn.id, view);
      }
      view.update(turn, this.actions);
      const expected = cursor ? cursor.nextSibling : c.firstChild;
      if (expected !== view.el) c.insertBefore(view.el, expected);
      cursor = view.el;
    }
    for (const el of [...c.children]) {
      if (!el.classList.contains("turn")) el.remove();
    }
    if (!turns.length && this.hint) c.append(this.hint);
    if (pinned) c.scrollTop = c.scrollHeight;
  }
}
