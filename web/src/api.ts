// The chatkeep HTTP API, called directly (threads, history, titles, stop) plus the pieces the useChat
// transport needs (auth header, a fetch that notices a 401).

import type { UIMessage } from "ai";

const TOKEN_KEY = "chatkeep.token";

let token: string | null = null;

/** Reads the sign-in token: `?token=…` in the URL (then kept in localStorage and removed from the URL), else
 * localStorage. Called once, before the first request. */
export function initToken(): void {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) {
    url.searchParams.delete("token");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
    if (fromUrl.trim()) {
      setToken(fromUrl.trim());
      return;
    }
  }
  try {
    token = window.localStorage.getItem(TOKEN_KEY);
  } catch {
    token = null; // storage disabled: the token lives in memory only
  }
}

export function getToken(): string | null {
  return token;
}

export function setToken(value: string | null): void {
  token = value;
  try {
    if (value) window.localStorage.setItem(TOKEN_KEY, value);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: keep it in memory
  }
}

export function authHeaders(): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

// ---- 401 handling: any request that comes back 401 tells the app, which shows the sign-in message.

type UnauthorizedListener = (message: string) => void;
const unauthorizedListeners = new Set<UnauthorizedListener>();

export function onUnauthorized(listener: UnauthorizedListener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

function reportUnauthorized(message: string): void {
  for (const listener of unauthorizedListeners) listener(message);
}

/** `fetch` for the useChat transport: the same request, but a 401 is reported to the app. */
export const authFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  if (response.status === 401) {
    const body = await response.clone().text();
    reportUnauthorized(errorMessageFromBody(body) ?? "The server asked for a sign-in token.");
  }
  return response;
};

// ---- errors

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** chatkeep's error body is `{error: {code, message}}`; anything else is shown as is (shortened). */
export function errorMessageFromBody(body: string): string | null {
  if (!body) return null;
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === "object" && "error" in parsed) {
      const error = (parsed as { error: unknown }).error;
      if (typeof error === "string") return error;
      if (error && typeof error === "object" && "message" in error) {
        const message = (error as { message: unknown }).message;
        if (typeof message === "string") return message;
      }
    }
  } catch {
    // not JSON
  }
  return body.length > 300 ? `${body.slice(0, 300)}…` : body;
}

/** A readable sentence for any error (fetch failures, chatkeep errors, useChat's APICallError). */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError && /fetch|network|load failed/i.test(error.message)) {
    return "Could not reach the chatkeep server. Check your connection and try again.";
  }
  if (error instanceof Error) {
    const status = (error as { statusCode?: unknown }).statusCode;
    const fromBody = errorMessageFromBody(error.message);
    if (typeof status === "number") return `${fromBody ?? "The request failed"} (HTTP ${status})`;
    return fromBody ?? "Something went wrong.";
  }
  return String(error);
}

export function isNetworkError(error: unknown): boolean {
  return error instanceof TypeError && /fetch|network|load failed/i.test(error.message);
}

// ---- requests

async function request<T>(method: string, path: string, body?: unknown): Promise<{ data: T; response: Response }> {
  const headers: Record<string, string> = { ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    let code = `http_${response.status}`;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: unknown } };
      if (typeof parsed.error?.code === "string") code = parsed.error.code;
    } catch {
      // not JSON
    }
    const message = errorMessageFromBody(text) ?? `${method} ${path} failed (HTTP ${response.status})`;
    if (response.status === 401) reportUnauthorized(message);
    throw new ApiError(response.status, code, message);
  }
  const data = (response.status === 204 ? undefined : await response.json()) as T;
  return { data, response };
}

const enc = encodeURIComponent;

export type ThreadStatus = "regular" | "archived";

export interface Thread {
  id: string;
  title: string | null;
  status: ThreadStatus;
  custom: unknown;
  createdAt: string;
  updatedAt: string;
  headId: string | null;
}

/** A row of GET /api/threads/{id}/messages: every message of every branch, parents before children. */
export interface HistoryRow {
  id: string;
  parent_id: string | null;
  format: string;
  content: unknown;
  created_at: string;
  status?: "complete" | "interrupted" | "aborted" | "error" | string;
}

export async function listThreads(limit: number): Promise<{ threads: Thread[]; nextCursor: string | null }> {
  const { data, response } = await request<Thread[]>("GET", `/api/threads?limit=${limit}`);
  return { threads: data, nextCursor: response.headers.get("x-next-cursor") };
}

export async function listThreadsAfter(
  limit: number,
  after: string,
): Promise<{ threads: Thread[]; nextCursor: string | null }> {
  const { data, response } = await request<Thread[]>("GET", `/api/threads?limit=${limit}&after=${enc(after)}`);
  return { threads: data, nextCursor: response.headers.get("x-next-cursor") };
}

export async function updateThread(
  id: string,
  patch: { title?: string; status?: ThreadStatus; headId?: string },
): Promise<Thread> {
  return (await request<Thread>("PATCH", `/api/threads/${enc(id)}`, patch)).data;
}

export async function deleteThread(id: string): Promise<void> {
  await request<void>("DELETE", `/api/threads/${enc(id)}`);
}

export async function generateTitle(id: string): Promise<string | null> {
  return (await request<{ title: string | null }>("POST", `/api/threads/${enc(id)}/title`, {})).data.title;
}

export async function historyRows(id: string): Promise<HistoryRow[]> {
  return (await request<HistoryRow[]>("GET", `/api/threads/${enc(id)}/messages`)).data;
}

export async function activeBranch(id: string): Promise<UIMessage[]> {
  return (await request<UIMessage[]>("GET", `/api/chat/${enc(id)}/messages`)).data;
}

export async function stopGeneration(id: string): Promise<void> {
  await request<void>("POST", `/api/chat/${enc(id)}/stop`);
}
