// The IDE's Socket.IO connection to the hub: auth by token, automatic reconnection,
// and requests that resolve with the hub's acknowledgement arguments.

import { io } from "./vendor/socket.io.esm.min.js";

const ACK_TIMEOUT_MS = 15_000;

/** The hub did not acknowledge in time, or the connection dropped first. */
export class AckTimeout extends Error {}

export class HubSocket {
  /**
   * @param {string} token  the REST bearer token
   * @param {object} on  callbacks: connect(), disconnect(reason), refused(message)
   *   (the hub rejected the handshake), failed(message) (a transport error; it retries),
   *   event(name, args) (every hub→IDE event)
   */
  constructor(token, on) {
    const base = new URL(".", document.baseURI).pathname;
    this.on = on;
    this.inflight = new Map(); // event name → requests waiting for their ack
    this.socket = io(window.location.origin, {
      path: `${base}socket.io`,
      // watchDrones: the sidebar shows every drone, so the hub sends each one's droneState
      // (set at the handshake, so no change is missed between the list's load and the socket).
      auth: { token, watchDrones: true },
      transports: ["websocket"],
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
    });
    this.socket.on("connect", () => on.connect());
    this.socket.on("disconnect", (reason) => on.disconnect(reason));
    this.socket.on("connect_error", (err) => {
      // socket.active is false when the server refused the handshake (bad token):
      // the client will not retry by itself.
      if (this.socket.active) on.failed(err.message);
      else on.refused(err.message);
    });
    this.socket.onAny((name, ...args) => on.event(name, args));
  }

  get connected() {
    return this.socket.connected;
  }

  /** Try again after a refused handshake. */
  reconnect() {
    this.socket.connect();
  }

  /** Send an event that the hub acknowledges; resolves with the ack's arguments. */
  request(event, ...args) {
    this.inflight.set(event, (this.inflight.get(event) || 0) + 1);
    return new Promise((resolve, reject) => {
      this.socket.timeout(ACK_TIMEOUT_MS).emit(event, ...args, (err, ...reply) => {
        this.inflight.set(event, this.inflight.get(event) - 1);
        if (err) reject(new AckTimeout(`The hub did not answer ${event} (${err.message || "timeout"}).`));
        else resolve(reply);
      });
    });
  }

  /** Whether a request for `event` waits for its ack (whose reply will carry any refusal). */
  awaiting(event) {
    return (this.inflight.get(event) || 0) > 0;
  }

  /** Send an event without acknowledgement. */
  send(event, ...args) {
    this.socket.emit(event, ...args);
  }

  close() {
    this.socket.off();
    this.socket.offAny();
    this.socket.disconnect();
  }
}
