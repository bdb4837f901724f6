// The chat session: the drone lock, the turns of the session and the live events.
//
// Resuming never loses or duplicates: every (re)lock starts a new epoch; turns that a
// `turnSnapshot` or a live event touched in this epoch are newer than REST history,
// so the history load only fills in the others.

import { api } from "./api.js";
import { emptyTurn, fromServer, reduce, Status } from "./state.js";

const LOCK_KEY = "gadget.lock";
const MAX_PENDING = 5000;
const AGENT_EVENTS = ["agent:thinking", "agent:response", "agent:tool-call", "agent:tool-result", "agent:complete"];

export class ChatSession {
  /**
   * @param {object} hooks  render(turns), changed() (lock / current turn / mode changed),
   *   status(text), log(...args), alert(text), droneState(state), modeChanged(mode),
   *   turnStarted(turn)
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
   * Returns true on success.
   */
  async open(drone, project, chatSession, { quiet = false } = {}) {
    if (!this.socket?.connected) {
      this.hooks.alert("Not connected to the hub yet; try again in a moment.");
      return false;
    }
    this.locking = { chatSession };
    if (!quiet) this.wanted = null;
    this.hooks.changed();
    const epoch = ++this.epoch;
    if (!chatSession || chatSession !== this.lock?.chatSession) this.reset();
    try {
      const [ok, value] = await this.socket.request(
        "requestSessionLock", { _id: drone }, { _id: project }, chatSession ? { _id: chatSession } : null,
      );
      if (!ok) {
        this.forget();
        if (!quiet) {
          this.hooks.alert(`Could not open the session: ${value || "refused by the hub"}`);
          return false;
        }
        // Coming back (reload, reconnect): show the history and retry when the drone is back.
        this.wanted = { drone, project, chatSession };
        localStorage.setItem(LOCK_KEY, JSON.stringify(this.wanted)); // a reload keeps trying
        this.hooks.status(`Could not re-open the session (${value || "refused"}); it re-opens when the drone is back.`);
        await this.loadHistory(epoch, chatSession);
        return false;
      }
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

  setMode(mode) {
    this.socket?.send("requestWorkspaceMode", mode);
  }

  /** Dispatch one hub→IDE event. */
  handle(name, args) {
    window.__gadgetTrace?.push([name, ...args]); // tests and debugging: set it to [] to record
    const handler = this.handlers[name];
    if (handler) handler(...args);
  }

  eventTable() {
    const table = {
      status: (message) => this.hooks.status(String(message ?? "")),
      log: (...args) => this.hooks.log(...args),
      workspaceModeChanged: (mode) => this.hooks.modeChanged(mode),
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
    const session = this.locking ? this.locking.chatSession : this.lock?.chatSession;
    return Boolean(json && session && (!json.chatSession || json.chatSession === session));
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
    const turn = this.turns.get(id);
    if (turn) {
      this.turns.set(id, reduce(turn, { type: "workOrderComplete", success, message }));
      this.touch(id);
    }
    if (id === this.currentTurnId) this.currentTurnId = null;
    this.hooks.status(success ? "Turn finished." : `Turn failed: ${message || "unknown error"}`);
    this.schedule();
    this.hooks.changed();
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
      this.hooks.render(this.ordered());
    });
  }
}
