// Per-turn cursors over the hub's numbered stream (docs/protocol.md, "Exactly-once").
//
// Every forwarded stream event ends with a {turnId, seq} mark. For each turn the page
// keeps the seq of the last event its view includes: the next one (seq = cursor + 1) is
// applied, anything at or below the cursor is a resend and ignored, anything further
// ahead is held until the missing events or a snapshot come. A snapshot (turnSnapshot,
// or a REST turn newer than the view) replaces the turn's view and sets the cursor to its
// seq; held events above it then apply in order. A turn the page has no view of yet (it
// locked the session mid-turn) holds everything until its snapshot.

/** Held events kept per turn; past it the turn is refreshed from a snapshot instead. */
export const MAX_HELD = 5000;

export class Cursors {
  constructor() {
    this.at = new Map(); // turnId → seq of the last event in the view
    this.held = new Map(); // turnId → Map(seq → event)
  }

  /** Whether the page has a view of `turnId` (a snapshot, REST turn or turnStarted set it). */
  has(turnId) {
    return this.at.has(turnId);
  }

  /** The turn's cursor (undefined before its first snapshot). */
  seq(turnId) {
    return this.at.get(turnId);
  }

  /** How many events of `turnId` wait for a snapshot or for the ones missing before them. */
  waiting(turnId) {
    return this.held.get(turnId)?.size ?? 0;
  }

  /** Turns that hold events (to refresh them when the gap does not close by itself). */
  stalled() {
    return [...this.held.keys()];
  }

  /**
   * A marked event. Returns the events to apply now, in order: none (a resend, or held),
   * this one, or this one and the held ones it unblocked. `overflow` is true when the turn
   * held too many: they were dropped, and the caller must refresh the turn from a snapshot.
   * @returns {{apply: object[], overflow: boolean}}
   */
  offer(turnId, seq, event) {
    const cursor = this.at.get(turnId);
    if (cursor !== undefined && seq <= cursor) return { apply: [], overflow: false };
    if (cursor !== undefined && seq === cursor + 1) {
      this.at.set(turnId, seq);
      return { apply: [event, ...this.drain(turnId)], overflow: false };
    }
    let held = this.held.get(turnId);
    if (!held) {
      held = new Map();
      this.held.set(turnId, held);
    }
    held.set(seq, event);
    if (held.size <= MAX_HELD) return { apply: [], overflow: false };
    this.held.delete(turnId);
    return { apply: [], overflow: true };
  }

  /**
   * A snapshot of `turnId` up to `seq` replaced the view: the cursor moves there, held
   * events at or below it are dropped (the snapshot includes them) and the ones right
   * after it are returned to apply in order.
   */
  reset(turnId, seq) {
    this.at.set(turnId, seq);
    const held = this.held.get(turnId);
    if (held) {
      for (const n of held.keys()) if (n <= seq) held.delete(n);
    }
    return this.drain(turnId);
  }

  /** Forget a turn's held events (it is not in the session shown). */
  drop(turnId) {
    this.held.delete(turnId);
  }

  clear() {
    this.at.clear();
    this.held.clear();
  }

  drain(turnId) {
    const held = this.held.get(turnId);
    if (!held) return [];
    const out = [];
    let next = this.at.get(turnId) + 1;
    while (held.has(next)) {
      out.push(held.get(next));
      held.delete(next);
      this.at.set(turnId, next);
      next += 1;
    }
    if (!held.size) this.held.delete(turnId);
    return out;
  }
}
