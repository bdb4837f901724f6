// The chat session: the drone lock, the turns of the session and the live events.
//
// Resuming never loses or duplicates: every (re)lock starts a new epoch; turns that a
// `turnSnapshot` or a live event touched in this epoch are newer than REST history,
// so the history load only fills in the others.

import { api } from "./api.js";
import { duration } from "./dom.js";
import { ModeSwitch } from "./mode.js";
import { emptyTurn, fromServer, reduce, Status } from "./state.js";

const LOCK_KEY = "gadget.lock";
const MAX_PENDING = 5000;
const AGENT_EVENTS = ["agent:thinking", "agent:response", "agent:tool-call", "agent:tool-result", "agent:complete"];

/** Drone events that carry a trailing {turnId, seq} mark (docs/protocol.md). */
const STREAM_EVENTS = new Set(["thinking", "response", "toolCall", "workOrderComplete", ...AGENT_EVENTS]);

function isMark(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    && Object.keys(value).length === 2 && typeof value.turnId === "string" && Number.isInteger(value.seq);
}

export class ChatSession {
  /**
   * @param {object} hooks  render(turns), changed() (lock / current turn / mode changed),
   *   status(text), log(...args), alert(text, tone), droneState(state), modeChanged(mode),
   *   mode() (the locked drone's workspace mode as last reported), turnStarted(turn)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.socket = null;
    this.lock = null; // {drone, project, chatSession}
    this.turns = new Map();
    this.currentTurnId = null;
    this.epoch = 0;
    this.touched = new Map(); // turnId → epoch of the last snapshot / live event
    this.pending = []; // live events that came before their turn was known
    this.locking = null; // {chatSession} while a lock request waits (chatSession null: a new one)
    this.wanted = null; // a session to re-open as soon as its drone is back online
    this.modes = new ModeSwitch(hooks);
    this.startedAt = new Map(); // turnId → when this page saw it start (for its duration)
    this.reveal = null; // a turn just sent, to scroll into view at the next render
    this.frame = 0;
    this.handlers = this.eventTable();
  }

  /** The lock to restore after a reload (same user re-locking takes over). */
  get savedLock() {
    try {
      return JSON.parse(localStorage.getItem(LOCK_KEY) || "null");
    } catch {
      return null;
    }
  }

  get running() {
    const turn = this.turns.get(this.currentTurnId);
    return Boolean(turn && turn.status === Status.PROCESSING);
  }

  attach(socket) {
    this.socket = socket;
  }

  /** Called on every (re)connect: take the session back and refresh it. */
  async onConnect() {
    const target = this.lock || this.wanted || this.savedLock;
    if (target?.chatSession) await this.open(target.drone, target.project, target.chatSession, { quiet: true });
  }

  /**
   * Lock `drone` for `project` and show the session: `chatSession` null starts a new one.
   * Returns true on success. A refusal while another session is open leaves that session
   * as it was (the hub refuses before it changes anything).
   */
  async open(drone, project, chatSession, { quiet = false } = {}) {
    if (!this.socket?.connected) {
      this.hooks.alert("Not connected to the hub yet; try again in a moment.");
      return false;
    }
    const previous = this.lock;
    const what = chatSession ? "the session" : "a new session";
    this.locking = { chatSession };
    if (!quiet) this.wanted = null;
    this.hooks.changed();
    const epoch = ++this.epoch;
    // A resumed session's snapshot may beat the ack: make room for it now. A new session
    // has no turns yet, so the one on screen stays until the hub says yes.
    if (chatSession && chatSession !== previous?.chatSession) this.reset();
    let back = null;
    try {
      const [ok, value] = await this.socket.request(
        "requestSessionLock", { _id: drone }, { _id: project }, chatSession ? { _id: chatSession } : null,
      );
      if (!ok) {
        const reason = value || "refused by the hub";
        if (previous && !quiet) {
          this.hooks.alert(`Could not open ${what}: ${reason}`);
          this.hooks.status(`Could not open ${what} (${reason}); still in the session you had open.`);
          if (chatSession && chatSession !== previous.chatSession) back = previous; // its turns were cleared
          return false;
        }
        this.forget();
        if (!quiet) {
          this.hooks.alert(`Could not open ${what}: ${reason}`);
          this.hooks.status(`Could not open ${what}.`);
          return false;
        }
        // Coming back (reload, reconnect): show the history and retry when the drone is back.
        this.wanted = { drone, project, chatSession };
        localStorage.setItem(LOCK_KEY, JSON.stringify(this.wanted)); // a reload keeps trying
        this.hooks.status(`Could not re-open the session (${reason}); it re-opens when the drone is back.`);
        await this.loadHistory(epoch, chatSession);
        return false;
      }
      if (value !== previous?.chatSession && !chatSession) this.reset();
      this.lock = { drone, project, chatSession: value };
      this.pending = []; // anything queued came from the session we left
      localStorage.setItem(LOCK_KEY, JSON.stringify(this.lock));
      this.hooks.status("Session open.");
      await this.loadHistory(epoch, value);
      return true;
    } catch (err) {
      this.hooks.alert(err.message);
      return false;
    } finally {
      this.locking = null;
      this.hooks.changed();
      // Still locked for the previous session: take it again, which replays its state.
      if (back) await this.open(back.drone, back.project, back.chatSession, { quiet: true });
    }
  }

  async release() {
    if (!this.lock) return;
    try {
      const [ok, reason] = await this.socket.request("releaseSessionLock");
      if (!ok) {
        this.hooks.alert(`Could not release the drone: ${reason || "refused"}`);
        return;
      }
    } catch (err) {
      this.hooks.alert(err.message);
      return;
    }
    this.wanted = null;
    this.forget();
    this.reset();
    this.hooks.status("Released the drone.");
  }

  /** Forget everything (signing out). */
  clear() {
    this.wanted = null;
    this.forget();
    this.reset();
  }

  /** Drop the lock (but keep the turns on screen). */
  forget() {
    this.lock = null;
    localStorage.removeItem(LOCK_KEY);
    this.hooks.changed();
  }

  reset() {
    this.turns.clear();
    this.touched.clear();
    this.pending = [];
    this.startedAt.clear();
    this.currentTurnId = null;
    this.schedule();
  }

  /** Show the stored turns of `chatSession`, keeping turns this epoch's events made newer. */
  async loadHistory(epoch, chatSession) {
    const list = await api.turns(chatSession);
    if (epoch !== this.epoch) return; // another open() started meanwhile
    for (const json of list) {
      if (this.touched.get(json._id) !== epoch) this.turns.set(json._id, fromServer(json));
    }
    const current = this.turns.get(this.currentTurnId);
    if (current && current.status !== Status.PROCESSING) this.currentTurnId = null;
    if (!this.currentTurnId) {
      const live = [...this.turns.values()].filter((t) => t.status === Status.PROCESSING).pop();
      if (live) this.setCurrent(live.id);
    }
    this.schedule();
    this.hooks.changed();
  }

  async submit(prompt) {
    if (!this.lock || this.running) return false;
    try {
      const [ok, value] = await this.socket.request("submitPrompt", prompt);
      if (!ok) {
        this.hooks.alert(`The prompt was not accepted: ${value || "refused by the hub"}`);
        return false;
      }
      if (!this.turns.has(value)) {
        this.turns.set(value, { ...emptyTurn(value, this.lock.chatSession), prompt, createdAt: new Date().toISOString() });
      }
      if (!this.startedAt.has(value)) this.startedAt.set(value, Date.now());
      this.reveal = value;
      this.touch(value);
      if (this.turns.get(value).status === Status.PROCESSING) this.setCurrent(value);
      this.schedule();
      return true;
    } catch (err) {
      this.hooks.alert(err.message);
      return false;
    }
  }

  async cancel() {
    if (!this.currentTurnId) return;
    try {
      const [ok, reason] = await this.socket.request("cancelWorkOrder", this.currentTurnId);
      if (!ok) this.hooks.alert(`Could not cancel: ${reason || "refused"}`);
      else this.hooks.status("Cancelling…");
    } catch (err) {
      this.hooks.alert(err.message);
    }
  }

  /** Ask the drone for a workspace mode (its answer or refusal goes to the status line). */
  setMode(mode) {
    if (this.lock) return this.modes.request(this.socket, mode);
    return Promise.resolve();
  }

  /** Dispatch one hub→IDE event (a stream event's trailing {turnId, seq} mark is set apart). */
  handle(name, args) {
    window.__gadgetTrace?.push([name, ...args]); // tests and debugging: set it to [] to record
    const last = args[args.length - 1];
    if (STREAM_EVENTS.has(name) && isMark(last)) args = args.slice(0, -1);
    const handler = this.handlers[name];
    if (handler) handler(...args);
  }

  eventTable() {
    const table = {
      status: (message) => this.hooks.status(String(message ?? "")),
      log: (...args) => this.hooks.log(...args),
      workspaceModeChanged: (mode) => {
        this.hooks.modeChanged(mode);
        this.modes.answered(mode);
      },
      droneState: (state) => {
        this.checkLock(state);
        this.retryWanted(state);
        this.hooks.droneState(state);
      },
      error: (err) => this.refused(err),
      thinking: (content) => this.applyLive({ type: "thinking", content }),
      response: (content) => this.applyLive({ type: "response", content }),
      toolCall: (callId, name, params, response) => this.applyLive({ type: "toolCall", callId, name, params, response }),
      workOrderComplete: (turnId, success, message) => this.complete(turnId, success, message),
      turnStarted: (turn) => this.started(turn),
      turnSnapshot: (turn) => this.snapshot(turn),
    };
    for (const type of AGENT_EVENTS) table[type] = (data) => this.applyLive({ type, data });
    return table;
  }

  /** The drone we wait for is back online: re-open the session we were in. */
  retryWanted(state) {
    const wanted = this.wanted;
    if (!wanted || this.lock || this.locking || state?._id !== wanted.drone || !state.online) return;
    this.open(wanted.drone, wanted.project, wanted.chatSession, { quiet: true }).catch((err) => this.hooks.alert(err.message));
  }

  /** Our drone is now locked for another session, or for none: the lock is gone. */
  checkLock(state) {
    if (!this.lock || this.locking || state?._id !== this.lock.drone || !("chatSession" in state)) return;
    if (state.chatSession === this.lock.chatSession) return;
    this.forget();
    this.hooks.status("This session no longer holds the drone; open it again to continue.");
  }

  /** A hub `error` event; refusals of acknowledged requests are reported by their caller. */
  refused(err) {
    const text = `${err?.event ? `${err.event}: ` : ""}${err?.message ?? "error"}`;
    this.hooks.log(new Date().toISOString(), "hub", "error", text, null);
    if (!this.socket?.awaiting(err?.event)) this.hooks.alert(text);
    this.hooks.changed(); // e.g. put the mode switch back
  }

  /** Whether a turn belongs to the session shown (or being locked: a snapshot may beat the ack). */
  ours(json) {
    if (!json) return false;
    const sessions = [this.locking?.chatSession, this.lock?.chatSession].filter(Boolean);
    return sessions.length > 0 && (!json.chatSession || sessions.includes(json.chatSession));
  }

  touch(turnId) {
    this.touched.set(turnId, this.epoch);
  }

  setCurrent(turnId) {
    this.currentTurnId = turnId;
    const queued = this.pending;
    this.pending = [];
    for (const event of queued) this.applyLive(event);
    this.hooks.changed();
  }

  started(json) {
    if (!this.ours(json)) return;
    this.hooks.turnStarted(json);
    const known = this.turns.get(json._id);
    this.turns.set(json._id, known ? reduce(known, { type: "turnStarted", turn: json }) : fromServer(json));
    if (!this.startedAt.has(json._id)) this.startedAt.set(json._id, Date.now());
    this.touch(json._id);
    if (this.turns.get(json._id).status === Status.PROCESSING) this.setCurrent(json._id);
    this.schedule();
  }

  snapshot(json) {
    if (!this.ours(json)) return;
    this.turns.set(json._id, fromServer(json));
    this.touch(json._id);
    // The snapshot already holds whatever was queued for it.
    this.pending = [];
    if (json.status === Status.PROCESSING) this.setCurrent(json._id);
    this.schedule();
  }

  applyLive(event) {
    const turn = this.turns.get(this.currentTurnId);
    if (!turn) {
      if (this.pending.length < MAX_PENDING) this.pending.push(event);
      return;
    }
    this.turns.set(turn.id, reduce(turn, event));
    this.touch(turn.id);
    this.schedule();
  }

  complete(turnId, success, message) {
    const id = turnId || this.currentTurnId;
    let turn = this.turns.get(id);
    if (turn) {
      turn = reduce(turn, { type: "workOrderComplete", success, message, durationMs: this.elapsed(turn) });
      this.turns.set(id, turn);
      this.touch(id);
    }
    if (id === this.currentTurnId) this.currentTurnId = null;
    const took = duration(turn?.durationMs);
    const after = took ? ` after ${took}` : "";
    if (success) this.hooks.status(took ? `Turn finished in ${took}.` : "Turn finished.");
    else if (turn?.cancelled) this.hooks.status(`Turn cancelled${after}.`);
    else this.hooks.status(`Turn failed${after}: ${message || "unknown error"}`);
    this.schedule();
    this.hooks.changed();
  }

  /** How long `turn` has run: since this page saw it start, else since the hub created it. */
  elapsed(turn) {
    const start = this.startedAt.get(turn.id) ?? Date.parse(turn.createdAt);
    return Number.isFinite(start) ? Math.max(0, Date.now() - start) : null;
  }

  /** The turn to scroll into view at this render, once. */
  takeReveal() {
    const id = this.reveal;
    this.reveal = null;
    return id;
  }

  /** Turns in display order (oldest first). */
  ordered() {
    const time = (t) => {
      const ms = Date.parse(t.createdAt);
      return Number.isNaN(ms) ? Infinity : ms;
    };
    return [...this.turns.values()].sort((a, b) => time(a) - time(b));
  }

  /** Coalesce renders to one per animation frame however fast the deltas come. */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.hooks.render(this.ordered(), this.takeReveal());
    });
  }
}
