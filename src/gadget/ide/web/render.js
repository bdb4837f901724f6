// Renders turns into the conversation pane. Each turn keeps a cache of the block and
// tool objects it last drew; since the reducer never mutates, an unchanged object
// means an unchanged element, so a streamed delta redraws only the block it touched.

import { duration, h, replaceChildren, when } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
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
    this.footer = h("div.turn-footer");
    this.el = h(
      "article.turn",
      { dataset: { turnId: turn.id }, "aria-label": "Turn" },
      h("div.turn-prompt", null, h("div.who", null, "You ", this.meta), this.prompt),
      this.blocksEl,
      this.footer,
    );
    this.drawn = []; // [{block, tool, el}]
    this.head = null;
  }

  update(turn) {
    const headKey = [turn.prompt, turn.status, turn.errorMessage, turn.cancelled, turn.durationMs, turn.createdAt].join("\u0000");
    if (headKey !== this.head) {
      this.head = headKey;
      // A cancelled turn is "error" on the wire; on screen it is its own, neutral state.
      this.el.dataset.status = turn.cancelled ? "cancelled" : turn.status;
      this.prompt.textContent = turn.prompt;
      this.meta.textContent = turn.createdAt ? when(turn.createdAt) : "";
      this.drawFooter(turn);
    }
    turn.blocks.forEach((block, i) => this.drawBlock(turn, block, i));
    for (const stale of this.drawn.splice(turn.blocks.length)) stale.el.remove();
    this.autoCollapse(turn);
  }

  drawFooter(turn) {
    const took = duration(turn.durationMs);
    if (turn.status === Status.PROCESSING) {
      replaceChildren(this.footer, h("span.working", { "aria-hidden": "true" }), h("span.muted", null, "Working…"));
    } else if (turn.cancelled) {
      replaceChildren(this.footer, h("span.turn-cancelled", null, took ? `Cancelled after ${took}` : "Cancelled"));
    } else if (turn.status === Status.ERROR) {
      replaceChildren(this.footer, h("div.turn-error", null, h("strong", null, "Turn failed: "), turn.errorMessage || "unknown error"));
    } else {
      replaceChildren(this.footer, took ? h("span.turn-done.muted", null, `Finished in ${took}`) : null);
    }
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
  constructor(container) {
    this.container = container;
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
      view.update(turn);
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
