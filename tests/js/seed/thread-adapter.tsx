// Copied verbatim from /work/shared/seeds/002_92b969222e7174e4.txt, "Implement RemoteThreadListAdapter" code block (lines 138-246; the trailing prose after the final "};" on line 246 is not code).
"use client";
import {
RuntimeAdapterProvider,
useAui,
type RemoteThreadListAdapter,
type ThreadHistoryAdapter,
} from "@assistant-ui/react";
import { createAssistantStream } from "assistant-stream";
import { useMemo } from "react";
export const threadListAdapter: RemoteThreadListAdapter = {
async list() {
const rows = await fetch("/api/threads").then((r) => r.json());
return {
threads: rows.map((t: any) => ({
status: t.status,
remoteId: t.id,
title: t.title ?? undefined,
})),
};
},
async initialize() {
const { id } = await fetch("/api/threads", { method: "POST" }).then((r) =>
r.json(),
);
return { remoteId: id };
},
async rename(remoteId, title) {
await fetch(`/api/threads/${remoteId}`, {
method: "PATCH",
body: JSON.stringify({ title }),
});
},
async archive(remoteId) {
await fetch(`/api/threads/${remoteId}`, {
method: "PATCH",
body: JSON.stringify({ status: "archived" }),
});
},
async unarchive(remoteId) {
await fetch(`/api/threads/${remoteId}`, {
method: "PATCH",
body: JSON.stringify({ status: "regular" }),
});
},
async delete(remoteId) {
await fetch(`/api/threads/${remoteId}`, { method: "DELETE" });
},
async fetch(remoteId) {
const t = await fetch(`/api/threads/${remoteId}`).then((r) => r.json());
return { status: t.status, remoteId: t.id, title: t.title };
},
async generateTitle(remoteId, messages) {
return createAssistantStream(async (controller) => {
const { title } = await fetch(`/api/threads/${remoteId}/title`, {
method: "POST",
body: JSON.stringify({ messages }),
}).then((r) => r.json());
controller.appendText(title);
});
},
unstable_Provider({ children }) {
const aui = useAui();
const history = useMemo<ThreadHistoryAdapter>(
() => ({
async load() {
return { messages: [] };
},
async append() {},
withFormat: (fmt) => ({
async load() {
const { remoteId } = aui.threadListItem().getState();
if (!remoteId) return { messages: [] };
const rows = await fetch(
`/api/threads/${remoteId}/messages`,
).then((r) => r.json());
return {
messages: rows.map((row: any) =>
fmt.decode({
id: row.id,
parent_id: row.parent_id,
format: row.format,
content: row.content,
}),
),
};
},
async append(item) {
const { remoteId } = await aui.threadListItem().initialize();
await fetch(`/api/threads/${remoteId}/messages`, {
method: "POST",
body: JSON.stringify({
id: fmt.getId(item.message),
parent_id: item.parentId,
format: fmt.format,
content: fmt.encode(item),
}),
});
},
}),
}),
[aui],
);
return (
<RuntimeAdapterProvider adapters={{ history }}>
{children}
</RuntimeAdapterProvider>
);
},
};
