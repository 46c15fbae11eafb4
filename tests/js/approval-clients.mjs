#!/usr/bin/env node
// Tool approval, driven through the real Vercel AI SDK chat (AbstractChat, what useChat wraps) of every installed
// `ai` version that knows approvals (6 and 7), against a running chatkeep whose model asks to refund an order
// (tests/_shop_app.py: `refund` needs approval).
//
//   node approval-clients.mjs <baseUrl> [package ...]      e.g. http://127.0.0.1:8123
//
// Per package, in a thread of its own: sendMessage("refund please") ends with the refund call waiting for approval
// (its input as the model gave it); addToolApprovalResponse({approved: true}) with
// sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses sends the answer, as a useChat app
// does; the same assistant message then holds the refund's output and the model's text, equal to what
// GET /api/chat/{id}/messages returns. (The server counts the refunds: one per package.)
//
// Prints one line per check, then "N passed, M failed"; exits 1 on any failure.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

const baseArg = process.argv[2];
if (!baseArg) {
  console.error("usage: node approval-clients.mjs <baseUrl> [package ...]");
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, "");
const packages = process.argv.slice(3).length ? process.argv.slice(3) : ["ai6-strict", "ai7-strict", "ai6", "ai7"];
const ORDER = { order_id: "o-1", amount: 10 };

let passed = 0;
let failed = 0;

const rid = () => randomBytes(6).toString("hex");
const plain = (value) => JSON.parse(JSON.stringify(value));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The ChatState useChat gives AbstractChat, without React (as in resume-clients.mjs).
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

async function waitFor(predicate, what, timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function approveRefund(ai) {
  const chatId = `approval-${rid()}`;
  class Chat extends ai.AbstractChat {
    constructor(init) {
      super({ ...init, state: new MemoryChatState() });
    }
  }
  const chat = new Chat({
    id: chatId,
    transport: new ai.DefaultChatTransport({ api: `${base}/api/chat` }),
    sendAutomaticallyWhen: ai.lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  await chat.sendMessage({ text: "refund please" });
  assert.equal(chat.status, "ready", String(chat.error));
  const asked = chat.messages.at(-1);
  const call = asked.parts.find((p) => p.type === "tool-refund");
  assert.equal(call?.state, "approval-requested", JSON.stringify(asked));
  assert.deepEqual(call.input, ORDER);

  await chat.addToolApprovalResponse({ id: call.approval.id, approved: true });
  const refunded = () =>
    chat.messages.at(-1).parts.some((p) => p.type === "tool-refund" && p.state === "output-available");
  await waitFor(() => chat.status === "ready" && refunded(), "the refund's output");
  assert.equal(chat.error, undefined);
  const reply = chat.messages.at(-1);
  assert.equal(reply.id, asked.id, "the answer continues the same assistant message");
  const done = reply.parts.find((p) => p.type === "tool-refund");
  assert.equal(done.output, "refunded 10.0 on o-1");
  assert.equal(done.approval.approved, true);
  assert.equal(reply.parts.at(-1).text, "refunded 10.0 on o-1");
  const res = await fetch(`${base}/api/chat/${encodeURIComponent(chatId)}/messages`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), plain(chat.messages));
}

for (const pkg of packages) {
  const ai = await import(pkg);
  const version = (await import(`${pkg}/package.json`, { with: { type: "json" } })).default.version;
  const name = `${pkg} ${version}: approve a refund`;
  try {
    await approveRefund(ai);
    passed++;
    console.log(`ok    ${name}`);
  } catch (error) {
    failed++;
    console.log(`FAIL  ${name}`);
    console.log(String(error?.stack ?? error).split("\n").map((l) => `      ${l}`).join("\n"));
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
