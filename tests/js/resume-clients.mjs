#!/usr/bin/env node
// Resumable streams, driven through the real Vercel AI SDK chat (AbstractChat, what useChat wraps) of every installed
// `ai` version, against a running chatkeep.
//
//   node resume-clients.mjs <baseUrl> [package ...]      e.g. http://127.0.0.1:8123
//
// Per package (default: strict 5.0.100, 6.0.100, 7.0.31 and the latest 5, 6, 7), three checks run side by side, each
// in its own thread (the server should run the demo model with CHATKEEP_DEMO_DELAY_MS around 20, so that
// "count to 200" streams for about 4 s):
//   * reload during streaming: a plain fetch POSTs "count to 200", reads a few text-delta chunks and drops the
//     connection (the page closed). GET …/messages must end with the user message. A fresh chat built from those
//     messages calls resumeStream(), as useChat({resume: true}) does on mount, and must end with the stored messages
//     plus exactly one assistant message: the original start.messageId, text "1 2 … 200", one text part, equal to
//     what GET …/messages returns afterwards. Old clients (< 5.0.233, < 6.0.250, 7.0.31) append a resumed stream to a
//     trailing assistant message, so a server that stored the in-flight reply would duplicate it here.
//   * resume after the end: once a reply has finished, GET …/stream is 204, resumeStream() on a fresh chat leaves the
//     messages as they were and the status `ready`, and POST …/stop is a harmless 204.
//   * stop: the chat sends "count to 200"; after a few numbers POST …/stop; the chat's own stream must end cleanly
//     (status `ready`, no error: whatever the server sends on stop must pass this version's chunk schema),
//     GET …/stream is 204, and the stored reply (same id) is "1 2 … k" with k < 200, starting with what the client saw.
//
// Prints one line per check, then "N passed, M failed"; exits 1 on any failure.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

const baseArg = process.argv[2];
if (!baseArg) {
  console.error("usage: node resume-clients.mjs <baseUrl> [package ...]");
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, "");
const packages = process.argv.slice(3).length
  ? process.argv.slice(3)
  : ["ai5-strict", "ai6-strict", "ai7-strict", "ai5", "ai6", "ai7"];

const COUNT = 200;
const PROMPT = `count to ${COUNT}`;
const FEW = 5; // text-delta chunks to see before the page "closes" or the user presses stop
const CHECK_TIMEOUT_MS = 30_000;

let passed = 0;
let failed = 0;

// Runs a check and returns its report; the caller prints reports in a fixed order (checks run in parallel).
async function check(name, fn) {
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { name, ok: true };
  } catch (error) {
    return { name, ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

function report({ name, ok, error }) {
  if (ok) {
    passed++;
    console.log(`ok    ${name}`);
  } else {
    failed++;
    console.log(`FAIL  ${name}`);
    console.log(String(error?.stack ?? error).split("\n").map((l) => `      ${l}`).join("\n"));
  }
}

const rid = () => randomBytes(6).toString("hex");
const plain = (value) => JSON.parse(JSON.stringify(value));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const numbers = (n) => Array.from({ length: n }, (_, i) => String(i + 1)).join(" ");
const chatPath = (chatId, tail) => `/api/chat/${encodeURIComponent(chatId)}/${tail}`;
const textOf = (message) =>
  (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");

// "1 2 … k" -> k; anything else -> -1 (the demo's deltas are "1", " 2", " 3", …).
function countPrefix(text) {
  if (text === "") return 0;
  const words = text.split(" ");
  return words.every((w, i) => w === String(i + 1)) ? words.length : -1;
}

async function getJson(path) {
  const res = await fetch(base + path);
  if (res.status !== 200) assert.fail(`GET ${path} -> ${res.status} ${await res.text()}`);
  return res.json();
}

// A streaming response: on success the body is left unread (reading it for a message would wait for the end).
async function expectStreaming(res, what) {
  if (res.status !== 200) assert.fail(`${what} -> ${res.status} ${await res.text()}`);
}

async function expectStatus(method, path, status) {
  const res = await fetch(base + path, { method });
  const body = await res.text();
  assert.equal(res.status, status, `${method} ${path} -> ${res.status} ${body.slice(0, 300)}`);
}

// The SSE events of a response body: parsed chunks, then "[DONE]" if the server sends it. Leaving the loop early
// cancels the body.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data === "[DONE]" ? data : JSON.parse(data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function postChat(chatId, messages, signal) {
  return fetch(`${base}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: chatId, messages, trigger: "submit-message" }),
    signal,
  });
}

// The ChatState that @ai-sdk/react's useChat gives AbstractChat (ReactChatState minus the React subscriptions):
// pushMessage appends the object as is, replaceMessage stores a snapshot (structuredClone), the messages setter
// copies the array. The same interface in 5.0.100 … 7.0.173 (7.x adds an optional experimental_queuedMessages,
// which a state may leave out).
class MemoryChatState {
  #messages;
  status = "ready";
  error = undefined;
  constructor(messages = []) {
    this.#messages = messages;
  }
  get messages() {
    return this.#messages;
  }
  set messages(messages) {
    this.#messages = [...messages];
  }
  pushMessage = (message) => {
    this.#messages = this.#messages.concat(message);
  };
  popMessage = () => {
    this.#messages = this.#messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.#messages = [...this.#messages.slice(0, index), this.snapshot(message), ...this.#messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

// A chat as useChat builds it: `new Chat({id, messages, transport})`. The transport is the stock
// DefaultChatTransport; its fetch only records each request's method, path and status for the assertions.
function makeChat(ai, { id, messages = [] }) {
  const requests = [];
  const transport = new ai.DefaultChatTransport({
    api: `${base}/api/chat`,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      requests.push({ method: init?.method ?? "GET", path: new URL(String(url)).pathname, status: res.status });
      return res;
    },
  });
  class Chat extends ai.AbstractChat {
    constructor({ messages: initial, ...init }) {
      super({ ...init, state: new MemoryChatState(initial) });
    }
  }
  const chat = new Chat({ id, messages, transport });
  return { chat, requests };
}

async function waitFor(predicate, what, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function assertReady(chat) {
  assert.equal(chat.error, undefined, `chat error: ${chat.error?.stack ?? chat.error}`);
  assert.equal(chat.status, "ready");
}

async function reloadDuringStreaming(ai, pkg) {
  const chatId = `js-${pkg}-reload-${rid()}`;
  const user = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: PROMPT }] };

  // The page: POST, see a few numbers, close.
  const page = new AbortController();
  const res = await postChat(chatId, [user], page.signal);
  await expectStreaming(res, "POST /api/chat");
  let start;
  let deltas = 0;
  for await (const chunk of sseEvents(res.body)) {
    start ??= chunk;
    if (chunk.type === "text-delta" && ++deltas >= FEW) break;
  }
  page.abort();
  assert.equal(start?.type, "start", `first chunk: ${JSON.stringify(start)}`);
  assert.ok(start.messageId, "start carries the server's messageId");
  assert.equal(deltas, FEW, "the stream ended before a few text-delta chunks arrived");

  // The reload: the in-flight reply is not part of the history yet.
  const stored = await getJson(chatPath(chatId, "messages"));
  assert.deepEqual(stored, [user], "while streaming, GET …/messages is the history up to the user message");

  // useChat({resume: true}) on mount.
  const { chat, requests } = makeChat(ai, { id: chatId, messages: structuredClone(stored) });
  await chat.resumeStream();
  assertReady(chat);
  const resume = requests.filter((r) => r.method === "GET");
  assert.deepEqual(
    resume.map((r) => [r.path, r.status]),
    [[chatPath(chatId, "stream"), 200]],
    "one resume GET, answered 200 (204 would mean the reply had already finished)",
  );

  const messages = plain(chat.messages);
  assert.equal(messages.length, stored.length + 1, `messages: ${JSON.stringify(messages).slice(0, 500)}`);
  assert.deepEqual(messages.slice(0, -1), stored, "the stored messages are untouched");
  const assistants = messages.filter((m) => m.role === "assistant");
  assert.equal(assistants.length, 1, "exactly one assistant message");
  const reply = messages.at(-1);
  assert.equal(reply.role, "assistant");
  assert.equal(reply.id, start.messageId, "the resumed reply keeps the original stream's messageId");
  const textParts = reply.parts.filter((p) => p.type === "text");
  assert.equal(textParts.length, 1, `one text part, got ${JSON.stringify(reply.parts).slice(0, 500)}`);
  assert.equal(reply.parts.filter((p) => p.type === "step-start").length, 1, "one step-start part");
  assert.equal(textParts[0].text, numbers(COUNT), "the text is the whole count, nothing twice");
  assert.equal(textParts[0].state, "done");

  // After the end: the reply is stored, equal to what the client built, and there is nothing left to resume.
  const after = await getJson(chatPath(chatId, "messages"));
  assert.deepEqual(after, messages, "GET …/messages afterwards equals the resumed chat");
  await expectStatus("GET", chatPath(chatId, "stream"), 204);
}

async function resumeAfterTheEnd(ai, pkg) {
  const chatId = `js-${pkg}-ended-${rid()}`;
  const user = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: PROMPT }] };
  const res = await postChat(chatId, [user]);
  await expectStreaming(res, "POST /api/chat");
  const chunks = [];
  for await (const chunk of sseEvents(res.body)) chunks.push(chunk);
  assert.equal(chunks[0]?.type, "start");
  assert.equal(chunks.at(-1), "[DONE]");

  await expectStatus("GET", chatPath(chatId, "stream"), 204);
  const stored = await getJson(chatPath(chatId, "messages"));
  assert.equal(stored.length, 2);
  assert.deepEqual(stored[0], user);
  assert.equal(stored[1].id, chunks[0].messageId);
  assert.equal(textOf(stored[1]), numbers(COUNT));

  const { chat, requests } = makeChat(ai, { id: chatId, messages: structuredClone(stored) });
  await chat.resumeStream();
  assertReady(chat);
  assert.deepEqual(
    requests.map((r) => [r.method, r.path, r.status]),
    [["GET", chatPath(chatId, "stream"), 204]],
  );
  assert.deepEqual(plain(chat.messages), stored, "resumeStream() after the end changes nothing");

  // A stop when nothing streams is harmless.
  await expectStatus("POST", chatPath(chatId, "stop"), 204);
  assert.deepEqual(await getJson(chatPath(chatId, "messages")), stored, "a late stop changes nothing");
}

async function stop(ai, pkg) {
  const chatId = `js-${pkg}-stop-${rid()}`;
  const { chat, requests } = makeChat(ai, { id: chatId });
  const sending = chat.sendMessage({ text: PROMPT });
  sending.catch(() => {}); // awaited below; avoid an unhandled rejection while waiting
  const seen = () => {
    const last = chat.messages.at(-1);
    return last?.role === "assistant" ? countPrefix(textOf(last)) : 0;
  };
  let settled = false;
  sending.finally(() => (settled = true)).catch(() => {});
  await waitFor(() => seen() >= FEW || settled, "a few numbers");
  assert.equal(chat.error, undefined, `chat error before the stop: ${chat.error?.stack ?? chat.error}`);
  assert.ok(seen() >= FEW && seen() < COUNT, `the reply is streaming (saw ${seen()} numbers, status ${chat.status})`);

  const res = await fetch(base + chatPath(chatId, "stop"), { method: "POST" });
  assert.ok(res.ok, `POST …/stop -> ${res.status} ${await res.text()}`);

  // The chat's own stream must now end, and end cleanly for this version's parser.
  await sending;
  assertReady(chat);
  assert.deepEqual(
    requests.map((r) => [r.method, r.path, r.status]),
    [["POST", "/api/chat", 200]],
  );
  const messages = plain(chat.messages);
  assert.deepEqual(messages.map((m) => m.role), ["user", "assistant"]);
  const clientText = textOf(messages[1]);
  const j = countPrefix(clientText);
  assert.ok(j >= FEW && j < COUNT, `the client's reply stops early: ${JSON.stringify(clientText.slice(0, 200))}`);

  await expectStatus("GET", chatPath(chatId, "stream"), 204);
  const stored = await getJson(chatPath(chatId, "messages"));
  assert.equal(stored.length, 2, `stored: ${JSON.stringify(stored).slice(0, 500)}`);
  assert.deepEqual(stored[0], messages[0]);
  assert.equal(stored[1].role, "assistant");
  assert.equal(stored[1].id, messages[1].id, "the stored partial reply has the streamed messageId");
  const storedText = textOf(stored[1]);
  const k = countPrefix(storedText);
  assert.ok(k >= 1 && k < COUNT, `the stored reply is "1 2 … k" with k < ${COUNT}: ${JSON.stringify(storedText.slice(0, 200))}`);
  assert.ok(storedText.startsWith(clientText), `the stored reply (${k}) holds what the client saw (${j})`);

  // Nothing left to stop or resume.
  await expectStatus("POST", chatPath(chatId, "stop"), 204);
  assert.deepEqual(await getJson(chatPath(chatId, "messages")), stored, "a second stop changes nothing");
}

for (const pkg of packages) {
  const ai = await import(pkg);
  const version = (await import(`${pkg}/package.json`, { with: { type: "json" } })).default.version;
  const label = `${pkg}@${version}`;
  assert.equal(typeof ai.AbstractChat, "function", `${label} exports AbstractChat`);

  const reports = await Promise.all([
    check(`${label} reload during streaming: resumeStream() adds the reply once, equal to the stored one`, () =>
      reloadDuringStreaming(ai, pkg),
    ),
    check(`${label} resume after the end: 204, messages unchanged, status ready`, () => resumeAfterTheEnd(ai, pkg)),
    check(`${label} stop: the stream ends, nothing to resume, the partial reply is stored`, () => stop(ai, pkg)),
  ]);
  reports.forEach(report);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
