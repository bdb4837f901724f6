// The turns of the session on screen, kept exactly by the stream's seq (stream.js).
//
// Three sources describe a turn: the whole turn up to a seq (`turnSnapshot`, a REST turn,
// `turnStarted` for a new one), marked live events (each applied once, in seq order), and
// the hub's own unmarked events (a turn it ended itself), applied as they come. REST
// answers out of band, so a REST turn replaces the view only when it is newer by seq (at
// the same seq, only to learn that the turn ended).

import { api } from "./api.js";
import { duration } from "./dom.js";
import { emptyTurn, fromServer, reduce, Status } from "./state.js";
import { Cursors } from "./stream.js";

/** How long held events may wait for the missing ones before the turn is fetched again. */
export const GAP_WAIT_MS = 3000;

export class TurnBook {
  /**
   * @param {object} hooks  schedule() (redraw), changed() (a turn started or ended),
   *   status(text), ours(json) (whether a turn belongs to the session shown),
   *   applied(turn, event) (a live event was applied; for notifications)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.turns = new Map();
    this.cursors = new Cursors();
    this.startedAt = new Map(); // turnId → when this page saw it start (for its duration)
    this.gapTimer = 0;
  }

  /** The running turn of the session (the newest one processing), or null. */
  get currentTurnId() {
    let id = null;
    for (const turn of this.turns.values()) if (turn.status === Status.PROCESSING) id = turn.id;
    return id;
  }

  get running() {
    return this.currentTurnId !== null;
  }

  clear() {
    this.turns.clear();
    this.cursors.clear();
    this.startedAt.clear();
    clearTimeout(this.gapTimer);
    this.gapTimer = 0;
  }

  /** Show `json` as the whole turn up to its seq, then what was held after it. */
  replace(json) {
    this.turns.set(json._id, fromServer(json, this.turns.get(json._id)?.decisions));
    this.each(json._id, this.cursors.reset(json._id, json.seq ?? 0), false);
    this.hooks.changed();
    this.hooks.schedule();
  }

  /** `turnStarted`: a new turn (or a known one's header: its blocks stay). */
  started(json) {
    if (!this.hooks.ours(json)) return;
    if (!this.startedAt.has(json._id)) this.startedAt.set(json._id, Date.now());
    const known = this.turns.get(json._id);
    if (!known || !this.cursors.has(json._id)) {
      this.replace(json);
      return;
    }
    this.turns.set(json._id, reduce(known, { type: "turnStarted", turn: json }));
    this.hooks.changed();
    this.hooks.schedule();
  }

  /** `turnSnapshot`: it comes in order on the socket, so it always replaces the view. */
  snapshot(json) {
    if (this.hooks.ours(json)) this.replace(json);
  }

  /** A REST turn (history, or a refresh of a stalled turn): taken when newer than the view. */
  adopt(json) {
    const cursor = this.cursors.seq(json._id);
    const seq = json.seq ?? 0;
    const known = this.turns.get(json._id);
    if (cursor === undefined || !known || seq > cursor) {
      this.replace(json);
    } else if (seq === cursor && known.status === Status.PROCESSING && json.status !== Status.PROCESSING) {
      this.replace(json); // the hub ended it (unmarked) while this page was away
    }
  }

  /** A turn this page created from an ack before any event about it. */
  local(turnId, chatSession, prompt) {
    if (this.turns.has(turnId)) return;
    this.turns.set(turnId, { ...emptyTurn(turnId, chatSession), prompt, createdAt: new Date().toISOString() });
    if (!this.cursors.has(turnId)) this.cursors.reset(turnId, 0);
    if (!this.startedAt.has(turnId)) this.startedAt.set(turnId, Date.now());
    this.hooks.schedule();
  }

  /** A marked live event: applied in seq order, exactly once. */
  marked(turnId, seq, event) {
    const { apply, overflow } = this.cursors.offer(turnId, seq, event);
    this.each(turnId, apply, true);
    if (overflow) this.refresh(turnId);
    else if (this.cursors.waiting(turnId)) this.watchGaps();
  }

  /** An unmarked event (the hub's own, or a hub that numbers nothing): applied now. */
  unmarked(turnId, event) {
    const id = turnId || this.currentTurnId;
    if (id && this.turns.has(id)) this.each(id, [event], true);
  }

  each(turnId, events, live) {
    for (const event of events) this.apply(turnId, event, live);
  }

  apply(turnId, event, live) {
    const before = this.turns.get(turnId);
    if (!before) return; // a cursor exists only with its turn; the hub's event for a turn not shown
    const turn = reduce(before, event.type === "workOrderComplete" ? { ...event, durationMs: this.elapsed(before) } : event);
    this.turns.set(turnId, turn);
    if (live) this.hooks.applied(turn, event);
    if (event.type === "workOrderComplete") this.ended(turn, event);
    this.hooks.schedule();
  }

  ended(turn, { success, message }) {
    const took = duration(turn.durationMs);
    const after = took ? ` after ${took}` : "";
    if (success) this.hooks.status(took ? `Turn finished in ${took}.` : "Turn finished.");
    else if (turn.cancelled) this.hooks.status(`Turn cancelled${after}.`);
    else this.hooks.status(`Turn failed${after}: ${message || "unknown error"}`);
    this.hooks.changed();
  }

  /** Held events that stay held: fetch those turns (REST is the hub's live view, with its seq). */
  watchGaps() {
    if (this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = 0;
      for (const turnId of this.cursors.stalled()) this.refresh(turnId);
    }, GAP_WAIT_MS);
  }

  async refresh(turnId) {
    let json;
    try {
      json = await api.turn(turnId);
    } catch (err) {
      if (err.status === 404) json = null; // not one of ours
      else return this.watchGaps(); // the hub is away: the re-lock's snapshot will come, or try again
    }
    if (json && this.hooks.ours(json)) {
      this.adopt(json);
      if (this.cursors.waiting(turnId)) this.watchGaps();
    } else {
      this.cursors.drop(turnId);
    }
  }

  /** How long `turn` has run: since this page saw it start, else since the hub created it. */
  elapsed(turn) {
    const start = this.startedAt.get(turn.id) ?? Date.parse(turn.createdAt);
    return Number.isFinite(start) ? Math.max(0, Date.now() - start) : null;
  }

  /** Turns in display order (oldest first). */
  ordered() {
    const time = (t) => {
      const ms = Date.parse(t.createdAt);
      return Number.isNaN(ms) ? Infinity : ms;
    };
    return [...this.turns.values()].sort((a, b) => time(a) - time(b));
  }
}
