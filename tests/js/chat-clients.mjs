#!/usr/bin/env node
// The real Vercel AI SDK clients against a running chatkeep's POST /api/chat.
//
//   node chat-clients.mjs <baseUrl> [package ...]      e.g. http://127.0.0.1:8123
//
// For every installed `ai` version (strict 5.0.100, 6.0.100, 7.0.31 and the latest 5, 6, 7 by default):
// DefaultChatTransport sends a message; the chunks it parsed with that version's own uiMessageChunkSchema are
// checked again one by one; readUIMessageStream builds the message the way useChat does; and that message must
// equal the one GET /api/chat/{id}/messages returns afterwards. Covers text, reasoning, tool calls, sources and
// data parts (the demo model's keywords), regenerate (a sibling reply), and the send-only-the-last-message body.
//
// Prints one line per check, then "N passed, M failed"; exits 1 on any failure.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

const baseArg = process.argv[2];
if (!baseArg) {
  console.error("usage: node chat-clients.mjs <baseUrl> [package ...]");
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, "");
const packages = process.argv.slice(3).length
  ? process.argv.slice(3)
  : ["ai5-strict", "ai6-strict", "ai7-strict", "ai5", "ai6", "ai7"];
// Versions whose reducer does not keep the reasoning part's id (ai-sdk-protocol.md §1.1, ai-sdk-v7-delta.md §1).
const NO_REASONING_ID = new Set(["ai5-strict", "ai6-strict", "ai7-strict"]);

const SCENARIOS = {
  text: "hello there, how are you",
  reasoning: "think before you answer",
  tool: "what is the weather in Oslo?",
  source: "give me a source",
  data: "send some data",
  everything: "think hard: weather in Lisbon, with a source and data",
};

let passed = 0;
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok    ${name}`);
  } catch (error) {
    failed++;
    console.log(`FAIL  ${name}`);
    console.log(String(error?.stack ?? error).split("\n").map((l) => `      ${l}`).join("\n"));
  }
}

const rid = () => randomBytes(6).toString("hex");
const plain = (value) => JSON.parse(JSON.stringify(value));

async function getJson(path) {
  const res = await fetch(base + path);
  assert.equal(res.status, 200, `GET ${path} -> ${res.status} ${await res.clone().text()}`);
  return res.json();
}

async function collect(stream) {
  const chunks = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

async function runTurn(ai, { chatId, messages, trigger = "submit-message", messageId, lastOnly = false }) {
  const transport = new ai.DefaultChatTransport({
    api: `${base}/api/chat`,
    ...(lastOnly
      ? { prepareSendMessagesRequest: ({ id, messages: all }) => ({ body: { id, message: all.at(-1) } }) }
      : {}),
  });
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger,
    messageId,
    abortSignal: undefined,
  });
  const chunks = await collect(stream);
  // The transport already parsed every event with this version's schema; check each chunk once more, strictly.
  const schema = ai.uiMessageChunkSchema;
  for (const chunk of chunks) {
    const validator = typeof schema === "function" ? schema() : schema;
    const result = await (validator.validate
      ? validator.validate(chunk)
      : { success: validator.safeParse(chunk).success });
    assert.ok(result.success !== false, `chunk rejected by the schema: ${JSON.stringify(chunk)}`);
  }
  let message;
  for await (message of ai.readUIMessageStream({ stream: ReadableStream.from(chunks), terminateOnError: true }));
  return { chunks, message: plain(message) };
}

function expectedFor(pkg, serverMessage) {
  if (!NO_REASONING_ID.has(pkg)) return serverMessage;
  const copy = structuredClone(serverMessage);
  for (const part of copy.parts) if (part.type === "reasoning") delete part.id;
  return copy;
}

for (const pkg of packages) {
  const ai = await import(pkg);
  const version = (await import(`${pkg}/package.json`, { with: { type: "json" } })).default.version;
  const label = `${pkg}@${version}`;

  for (const [scenario, prompt] of Object.entries(SCENARIOS)) {
    await check(`${label} ${scenario}: the stream passes the schema and equals the stored reply`, async () => {
      const chatId = `js-${pkg}-${scenario}-${rid()}`;
      const user = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: prompt }] };
      const { chunks, message } = await runTurn(ai, { chatId, messages: [user] });
      assert.equal(chunks[0].type, "start");
      assert.ok(chunks[0].messageId, "start carries the server's messageId");
      assert.equal(message.id, chunks[0].messageId);
      const stored = await getJson(`/api/chat/${encodeURIComponent(chatId)}/messages`);
      assert.equal(stored.length, 2);
      assert.deepEqual(stored[0], user);
      assert.deepEqual(message, expectedFor(pkg, stored[1]));
      const types = new Set(message.parts.map((p) => p.type));
      const wanted = {
        text: ["text"],
        reasoning: ["reasoning", "text"],
        tool: ["tool-get_weather", "text"],
        source: ["source-url"],
        data: ["data-stats"],
        everything: ["reasoning", "tool-get_weather", "text", "source-url", "data-stats"],
      }[scenario];
      for (const type of wanted) assert.ok(types.has(type), `reply has a ${type} part: ${[...types]}`);
    });
  }

  await check(`${label} regenerate keeps the old reply as a sibling`, async () => {
    const chatId = `js-${pkg}-regen-${rid()}`;
    const user = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: "hello" }] };
    const first = await runTurn(ai, { chatId, messages: [user] });
    const second = await runTurn(ai, {
      chatId,
      messages: [user],
      trigger: "regenerate-message",
      messageId: first.message.id,
    });
    assert.notEqual(second.message.id, first.message.id);
    const rows = await getJson(`/api/threads/${encodeURIComponent(chatId)}/messages`);
    assert.deepEqual(
      rows.map((r) => [r.id, r.parent_id]),
      [
        [user.id, null],
        [first.message.id, user.id],
        [second.message.id, user.id],
      ],
    );
    const active = await getJson(`/api/chat/${encodeURIComponent(chatId)}/messages`);
    assert.deepEqual(
      active.map((m) => m.id),
      [user.id, second.message.id],
    );
  });

  await check(`${label} send-only-the-last-message body continues from the stored history`, async () => {
    const chatId = `js-${pkg}-last-${rid()}`;
    const u1 = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: "first" }] };
    const a1 = (await runTurn(ai, { chatId, messages: [u1], lastOnly: true })).message;
    const u2 = { id: ai.generateId(), role: "user", parts: [{ type: "text", text: "second" }] };
    const a2 = (await runTurn(ai, { chatId, messages: [u1, a1, u2], lastOnly: true })).message;
    const stored = await getJson(`/api/chat/${encodeURIComponent(chatId)}/messages`);
    assert.deepEqual(
      stored.map((m) => m.id),
      [u1.id, a1.id, u2.id, a2.id],
    );
    assert.deepEqual(a2, expectedFor(pkg, stored[3]));
  });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
