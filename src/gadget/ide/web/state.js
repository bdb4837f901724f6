// The client's model of chat turns and the pure reducer that applies wire events.
//
// A turn from REST or from `turnSnapshot` is normalized by `fromServer`; every live
// event then goes through `reduce(turn, event)`, which returns a new turn and never
// mutates the old one (changed blocks and tools are new objects, unchanged ones are
// shared). So a snapshot + the deltas after it gives the same turn as streaming the
// whole thing live, and the renderer can skip any block whose object is unchanged.
//
// Turn = {id, chatSession, prompt, status, errorMessage, cancelled, durationMs, retries,
//         attempt, createdAt, blocks: Block[], tools: {[callId]: Tool},
//         pendingApproval: Approval|null, decisions: {[callId]: Decision},
//         changes: Change[]|null, reverted, conflicts: [{path, reason}], usage: Usage}
//   (a cancelled turn keeps status "error" as on the wire; `cancelled` tells it apart)
// Block = {kind: "text", mode: "thinking"|"responding", text, attempt}
//       | {kind: "tool", callId, attempt}
// Tool = {callId, name, parameters, response, subagent, done, agent: Agent|null,
//         approval: Decision|null}
//   (parameters/response stay the wire's JSON strings; null until known)
// Approval = {callId, name, parameters, server?, agentId?, askedAt?} (the tool call waiting)
// Decision = {decision: "allow"|"deny"|"allow-session", by, at}
// Change = {path, status: "added"|"modified"|"deleted", additions, deletions, diff?}
// Usage = {promptTokens, completionTokens, modelCalls, durationMs, cost: number|null}
// Agent = {items: AgentItem[], complete}
// AgentItem = {mode: "thinking"|"responding", text} | {mode: "tool", tool, args, result, done}

export const Status = Object.freeze({ PROCESSING: "processing", FINISHED: "finished", ERROR: "error" });

/** Parse a JSON string from the wire; anything unparsable comes back as the raw text. */
export function parseJson(value) {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function newTool(callId, fields = {}) {
  return {
    callId, name: null, parameters: null, response: null, subagent: null, done: false, agent: null, approval: null,
    ...fields,
  };
}

/** A turn's usage from its stats (the hub adds up the drone's `usage` reports). */
export function usageFrom(stats) {
  const n = (v) => (Number.isFinite(v) ? v : 0);
  return {
    promptTokens: n(stats?.promptTokens),
    completionTokens: n(stats?.completionTokens),
    modelCalls: n(stats?.modelCalls),
    durationMs: n(stats?.durationMs),
    cost: Number.isFinite(stats?.cost) ? stats.cost : null,
  };
}

/** One model call's `usage` report added to a turn's usage. */
function addUsage(usage, report) {
  const more = usageFrom({ ...report, modelCalls: 1 });
  return {
    promptTokens: usage.promptTokens + more.promptTokens,
    completionTokens: usage.completionTokens + more.completionTokens,
    modelCalls: usage.modelCalls + 1,
    durationMs: usage.durationMs + more.durationMs,
    cost: usage.cost === null && more.cost === null ? null : (usage.cost ?? 0) + (more.cost ?? 0),
  };
}

function newAgent() {
  return { items: [], complete: false };
}

/** A turn known only by its id (live events that came before its prompt). */
export function emptyTurn(id, chatSession = null) {
  return {
    id, chatSession, prompt: "", status: Status.PROCESSING, errorMessage: null, cancelled: false,
    durationMs: null, retries: 0, attempt: 1, createdAt: null, blocks: [], tools: {},
    pendingApproval: null, decisions: {}, changes: null, reverted: false, conflicts: [], usage: usageFrom(null),
  };
}

/**
 * Whether an ended turn was cancelled: the hub's `cancelled` flag, or (hubs that do not
 * send it yet) the drone's and hub's "cancelled…" error message.
 */
export function wasCancelled(status, errorMessage, flag) {
  if (status !== Status.ERROR) return false;
  if (typeof flag === "boolean") return flag;
  return /^cancelled\b/i.test(errorMessage || "");
}

/** How long a stored, ended turn took (its last update minus its creation), or null. */
function storedDuration(json) {
  if (!json.status || json.status === Status.PROCESSING) return null;
  const ms = Date.parse(json.updatedAt) - Date.parse(json.createdAt);
  return Number.isFinite(ms) && ms >= 0 ? ms : null;
}

/**
 * Normalize a turn JSON (REST, `turnStarted`, `turnSnapshot`) into the client model.
 * @param {object} decisions  answers this page already saw (`approvalDecision`), by callId:
 *   they outlive a snapshot, and a call already answered no longer waits
 */
export function fromServer(json, decisions = {}) {
  const pending = json.pendingApproval && !decisions[json.pendingApproval.callId] ? json.pendingApproval : null;
  const turn = {
    ...emptyTurn(json._id, json.chatSession ?? null),
    prompt: json.prompt ?? "",
    status: json.status ?? Status.PROCESSING,
    errorMessage: json.errorMessage ?? null,
    cancelled: wasCancelled(json.status, json.errorMessage, json.cancelled),
    durationMs: storedDuration(json),
    retries: json.retries ?? 0,
    createdAt: json.createdAt ?? null,
    pendingApproval: json.status === Status.PROCESSING ? pending : null,
    decisions,
    changes: Array.isArray(json.changes) ? json.changes : null,
    reverted: json.reverted === true,
    usage: usageFrom(json.stats),
  };
  const tools = {};
  for (const call of json.toolCalls || []) {
    tools[call.callId] = newTool(call.callId, {
      name: call.name, parameters: call.parameters, response: call.response,
      subagent: call.subagent ?? null, done: true, approval: call.approval ?? decisions[call.callId] ?? null,
    });
  }
  const blocks = [];
  let attempt = turn.retries + 1;
  for (const block of json.blocks || []) {
    const blockAttempt = block.attempt ?? 1;
    attempt = Math.max(attempt, blockAttempt);
    if (block.mode === "tool") {
      const c = block.content && typeof block.content === "object" ? block.content : parseJson(block.content);
      const callId = c?.callId ?? `block-${blocks.length}`;
      tools[callId] = newTool(callId, {
        ...tools[callId],
        name: c?.name ?? tools[callId]?.name ?? "tool",
        parameters: c?.parameters ?? tools[callId]?.parameters ?? null,
        response: c?.response ?? tools[callId]?.response ?? null,
        subagent: c?.subagent ?? tools[callId]?.subagent ?? null,
        approval: c?.approval ?? tools[callId]?.approval ?? decisions[callId] ?? null,
        done: true,
      });
      blocks.push({ kind: "tool", callId, attempt: blockAttempt });
    } else {
      const text = typeof block.content === "string" ? block.content : JSON.stringify(block.content);
      blocks.push({ kind: "text", mode: block.mode, text, attempt: blockAttempt });
    }
  }
  // Tool calls the blocks do not mention (older records) still get a card.
  const inBlocks = new Set(blocks.filter((b) => b.kind === "tool").map((b) => b.callId));
  for (const callId of Object.keys(tools)) {
    if (!inBlocks.has(callId)) blocks.push({ kind: "tool", callId, attempt });
  }
  return withAgentStreams({ ...turn, attempt, blocks, tools }, json.agentStreams);
}

/**
 * Rebuild subagent cards from what the hub kept of their streams: a finished subagent's
 * `subagent.stream` in its tool call, a running one's in the snapshot's `agentStreams`.
 * Both are `[event, payload]` pairs, replayed through the same reducer as live events.
 */
function withAgentStreams(turn, running) {
  const streams = Object.values(turn.tools)
    .filter((tool) => Array.isArray(tool.subagent?.stream))
    .map((tool) => [tool.callId, tool.subagent.stream]);
  streams.push(...Object.entries(running || {}));
  let result = turn;
  for (const [agentId, stream] of streams) {
    for (const [name, data] of stream) {
      if (name in AGENT_REDUCERS) result = agentEvent(result, name, { ...data, agentId });
    }
  }
  return result;
}

/** `turnStarted` for a turn we may already know: update its header, keep its blocks. */
function started(turn, json) {
  const retries = json.retries ?? turn.retries;
  const status = json.status ?? Status.PROCESSING;
  return {
    ...turn,
    chatSession: json.chatSession ?? turn.chatSession,
    prompt: json.prompt ?? turn.prompt,
    status,
    errorMessage: json.errorMessage ?? null,
    cancelled: wasCancelled(status, json.errorMessage, json.cancelled),
    createdAt: json.createdAt ?? turn.createdAt,
    retries,
    attempt: Math.max(turn.attempt, retries + 1),
  };
}

function appendText(turn, mode, text) {
  if (!text) return turn;
  const blocks = turn.blocks.slice();
  const last = blocks[blocks.length - 1];
  if (last && last.kind === "text" && last.mode === mode && last.attempt === turn.attempt) {
    blocks[blocks.length - 1] = { ...last, text: last.text + text };
  } else {
    blocks.push({ kind: "text", mode, text, attempt: turn.attempt });
  }
  return { ...turn, blocks };
}

/** Put `tool` in the turn, adding its block the first time its callId is seen. */
function withTool(turn, tool) {
  const known = Object.hasOwn(turn.tools, tool.callId);
  const tools = { ...turn.tools, [tool.callId]: tool };
  const blocks = known ? turn.blocks : [...turn.blocks, { kind: "tool", callId: tool.callId, attempt: turn.attempt }];
  return { ...turn, tools, blocks };
}

function toolCall(turn, { callId, name, params, response }) {
  const prev = turn.tools[callId] || newTool(callId);
  const approval = prev.approval ?? turn.decisions[callId] ?? null;
  return withTool(turn, { ...prev, name, parameters: params, response, approval, done: true });
}

/** A tool call waits for the person (unless this page saw it answered already). */
function toolApproval(turn, { approval }) {
  if (!approval?.callId || turn.decisions[approval.callId] || turn.status !== Status.PROCESSING) return turn;
  return { ...turn, pendingApproval: approval };
}

/** Someone answered a waiting call: every tab drops its card; the tool card keeps who said what. */
function approvalDecision(turn, { callId, decision, by, at }) {
  // This page's own ack (who and when unknown) never erases what the hub said.
  const known = turn.decisions[callId];
  const answer = { decision: decision ?? known?.decision ?? null, by: by ?? known?.by ?? null, at: at ?? known?.at ?? null };
  const decisions = { ...turn.decisions, [callId]: answer };
  const pendingApproval = turn.pendingApproval?.callId === callId ? null : turn.pendingApproval;
  const tools = callId in turn.tools ? { ...turn.tools, [callId]: { ...turn.tools[callId], approval: answer } } : turn.tools;
  return { ...turn, decisions, pendingApproval, tools };
}

function agentText(agent, mode, text) {
  if (!text) return agent;
  const items = agent.items.slice();
  const last = items[items.length - 1];
  if (last && last.mode === mode) items[items.length - 1] = { ...last, text: last.text + text };
  else items.push({ mode, text });
  return { ...agent, items };
}

function agentToolResult(agent, tool, result) {
  const items = agent.items.slice();
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (item.mode === "tool" && !item.done && item.tool === tool) {
      items[i] = { ...item, result, done: true };
      return { ...agent, items };
    }
  }
  items.push({ mode: "tool", tool, args: null, result, done: true });
  return { ...agent, items };
}

const AGENT_REDUCERS = {
  "agent:thinking": (agent, d) => agentText(agent, "thinking", d.thinking),
  "agent:response": (agent, d) => agentText(agent, "responding", d.chunk),
  "agent:tool-call": (agent, d) => ({
    ...agent, items: [...agent.items, { mode: "tool", tool: d.tool, args: d.args ?? null, result: undefined, done: false }],
  }),
  "agent:tool-result": (agent, d) => agentToolResult(agent, d.tool, d.result),
  "agent:complete": (agent) => ({ ...agent, complete: true }),
};

/** A subagent event: its card is its parent's tool call (agentId = the parent's callId). */
function agentEvent(turn, name, data) {
  const callId = data.agentId;
  const prev = turn.tools[callId] || newTool(callId);
  const agent = AGENT_REDUCERS[name](prev.agent || newAgent(), data);
  const tool = { ...prev, agent };
  if (name === "agent:complete") {
    if (data.subagent) tool.subagent = data.subagent;
    if (data.response != null && prev.response == null) tool.response = JSON.stringify(data.response);
  }
  return withTool(turn, tool);
}

function complete(turn, { success, message, durationMs }) {
  const status = success ? Status.FINISHED : Status.ERROR;
  const errorMessage = success ? null : message || turn.errorMessage || "The turn failed.";
  return {
    ...turn,
    status,
    errorMessage,
    cancelled: wasCancelled(status, errorMessage),
    durationMs: durationMs ?? turn.durationMs,
    pendingApproval: null,
  };
}

const REDUCERS = {
  turnStarted: (turn, e) => started(turn, e.turn),
  thinking: (turn, e) => appendText(turn, "thinking", e.content),
  response: (turn, e) => appendText(turn, "responding", e.content),
  toolCall,
  workOrderComplete: complete,
  toolApproval,
  approvalDecision,
  turnChanges: (turn, e) => ({ ...turn, changes: Array.isArray(e.changes) ? e.changes : [] }),
  turnReverted: (turn, e) => ({ ...turn, reverted: e.reverted === true, conflicts: Array.isArray(e.conflicts) ? e.conflicts : [] }),
  usage: (turn, e) => ({ ...turn, usage: addUsage(turn.usage, e.usage || {}) }),
};

/**
 * Apply one wire event to a turn and return the new turn.
 * @param {object} turn  a turn from fromServer/emptyTurn/reduce
 * @param {{type: string}} event  `{type: "thinking", content}`, `{type: "toolCall", callId, name,
 *   params, response}`, `{type: "agent:tool-call", data}`, `{type: "workOrderComplete", success,
 *   message, durationMs?}`, `{type: "turnStarted", turn}`, `{type: "toolApproval", approval}`,
 *   `{type: "approvalDecision", callId, decision, by}`, `{type: "turnChanges", changes}`,
 *   `{type: "turnReverted", reverted, conflicts}`, `{type: "usage", usage}`
 */
export function reduce(turn, event) {
  if (event.type in AGENT_REDUCERS) return agentEvent(turn, event.type, event.data || {});
  const fn = REDUCERS[event.type];
  return fn ? fn(turn, event) : turn;
}
