// The page: routing (`/` = a new chat, `/chat/{id}` = a thread), the thread list, the sign-in message.

import { generateId } from "ai";
import { useCallback, useEffect, useRef, useState } from "react";
import {
  deleteThread,
  describeError,
  generateTitle,
  getToken,
  listThreads,
  listThreadsAfter,
  onUnauthorized,
  setToken,
  type Thread,
  updateThread,
} from "./api";
import { ChatPage } from "./ChatPage";
import { MenuIcon, PlusIcon } from "./icons";
import { Sidebar, UNTITLED } from "./Sidebar";

interface Route {
  threadId: string;
  /** `/`: a chat that does not exist on the server until its first message is sent */
  isNew: boolean;
}

function parseRoute(pathname: string): Route {
  const match = /^\/chat\/([^/]+)\/?$/.exec(pathname);
  if (match?.[1]) {
    try {
      return { threadId: decodeURIComponent(match[1]), isNew: false };
    } catch {
      // a malformed escape: treat as a new chat
    }
  }
  // The id of a new chat is made here; the server creates the thread on the first POST /api/chat.
  return { threadId: generateId(), isNew: true };
}

const chatPath = (id: string) => `/chat/${encodeURIComponent(id)}`;

function useThreads() {
  const [threads, setThreads] = useState<Thread[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const threadsRef = useRef(threads);
  threadsRef.current = threads;

  const refresh = useCallback(async () => {
    // Reload as many as are shown (the first page, or more after "Show more").
    const limit = Math.min(1000, Math.max(100, threadsRef.current.length));
    const page = await listThreads(limit);
    threadsRef.current = page.threads;
    setThreads(page.threads);
    setCursor(page.nextCursor);
    setLoaded(true);
    return page.threads;
  }, []);

  const loadMore = useCallback(async () => {
    if (!cursor) return;
    const page = await listThreadsAfter(100, cursor);
    setThreads((current) => {
      const known = new Set(current.map((t) => t.id));
      return [...current, ...page.threads.filter((t) => !known.has(t.id))];
    });
    setCursor(page.nextCursor);
  }, [cursor]);

  return { threads, loaded, hasMore: cursor !== null, refresh, loadMore };
}

function AuthScreen({ message }: { message: string }) {
  const [value, setValue] = useState("");
  const hadToken = getToken() !== null;
  return (
    <div className="auth-screen">
      <div className="auth-card" data-testid="auth-error" role="alert">
        <h1>Sign-in needed</h1>
        <p>
          This chatkeep needs a sign-in token{hadToken ? ", and the one this browser has was not accepted" : ""}.
        </p>
        <p className="muted">The server said: {message}</p>
        <p>
          Open this page with the token in the address, once: <code>{`${window.location.origin}/?token=<your token>`}</code>.
          It is kept in this browser (and removed from the address). Or paste it here:
        </p>
        <form
          className="auth-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (!value.trim()) return;
            setToken(value.trim());
            window.location.reload();
          }}
        >
          <input
            type="password"
            autoComplete="off"
            placeholder="Token (a JWT)"
            aria-label="Sign-in token"
            data-testid="token-input"
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
          <button type="submit" className="btn btn-primary" data-testid="token-save" disabled={!value.trim()}>
            Sign in
          </button>
        </form>
        {hadToken ? (
          <button
            type="button"
            className="btn btn-sm"
            data-testid="token-forget"
            onClick={() => {
              setToken(null);
              window.location.reload();
            }}
          >
            Forget the saved token
          </button>
        ) : null}
      </div>
    </div>
  );
}

export function App() {
  const [route, setRoute] = useState<Route>(() => parseRoute(window.location.pathname));
  const [authError, setAuthError] = useState<string | null>(null);
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [toast, setToast] = useState<string | null>(null);
  const { threads, loaded, hasMore, refresh, loadMore } = useThreads();
  const titled = useRef(new Set<string>());

  useEffect(() => onUnauthorized((message) => setAuthError(message)), []);

  // Unknown paths show a new chat at `/`.
  useEffect(() => {
    if (route.isNew && window.location.pathname !== "/") window.history.replaceState(null, "", "/");
  }, [route]);

  useEffect(() => {
    const onPop = () => {
      setRoute(parseRoute(window.location.pathname));
      setDrawerOpen(false);
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const report = useCallback((error: unknown) => setToast(describeError(error)), []);

  const refreshQuietly = useCallback(() => {
    refresh().catch(report);
  }, [refresh, report]);

  useEffect(() => {
    refreshQuietly();
  }, [refreshQuietly]);

  useEffect(() => {
    if (!toast) return;
    const timer = window.setTimeout(() => setToast(null), 6000);
    return () => window.clearTimeout(timer);
  }, [toast]);

  const navigate = useCallback((path: string) => {
    window.history.pushState(null, "", path);
    setRoute(parseRoute(path));
    setDrawerOpen(false);
  }, []);

  const newChat = useCallback(() => navigate("/"), [navigate]);
  const openThread = useCallback((id: string) => navigate(chatPath(id)), [navigate]);

  const onFirstSend = useCallback((threadId: string) => {
    // `/` becomes the thread's address once it exists (its first reply has started).
    window.history.replaceState(null, "", chatPath(threadId));
    setRoute({ threadId, isNew: false });
  }, []);

  const onTurnFinished = useCallback(
    async (threadId: string, ok: boolean) => {
      try {
        const list = await refresh();
        const thread = list.find((t) => t.id === threadId);
        // After the first reply of a new thread: ask the server for a title (once per thread and page load).
        if (ok && thread && !thread.title && !titled.current.has(threadId)) {
          titled.current.add(threadId);
          await generateTitle(threadId);
          await refresh();
        }
      } catch (error) {
        report(error);
      }
    },
    [refresh, report],
  );

  const onRename = useCallback(
    async (id: string, title: string) => {
      try {
        await updateThread(id, { title });
        await refresh();
      } catch (error) {
        report(error);
      }
    },
    [refresh, report],
  );

  const onArchive = useCallback(
    async (id: string, archived: boolean) => {
      try {
        await updateThread(id, { status: archived ? "archived" : "regular" });
        await refresh();
      } catch (error) {
        report(error);
      }
    },
    [refresh, report],
  );

  const onDelete = useCallback(
    async (id: string) => {
      try {
        await deleteThread(id);
        if (id === route.threadId) navigate("/");
        await refresh();
      } catch (error) {
        report(error);
      }
    },
    [refresh, report, navigate, route.threadId],
  );

  // Forget the token, then start afresh at `/`: nothing of this user's stays in the page, and the server says
  // whether it needs a sign-in (it then shows how).
  const signOut = useCallback(() => {
    setToken(null);
    window.location.assign("/");
  }, []);

  const current = threads.find((t) => t.id === route.threadId);
  const title = route.isNew ? UNTITLED : (current?.title ?? (current ? UNTITLED : ""));

  useEffect(() => {
    document.title = title && title !== UNTITLED ? `${title} · chatkeep` : "chatkeep";
  }, [title]);

  // Close the drawer with Escape.
  useEffect(() => {
    if (!drawerOpen) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") setDrawerOpen(false);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [drawerOpen]);

  if (authError !== null) return <AuthScreen message={authError} />;

  return (
    <div className="app">
      <Sidebar
        threads={threads}
        activeId={route.isNew ? null : route.threadId}
        loaded={loaded}
        hasMore={hasMore}
        open={drawerOpen}
        onClose={() => setDrawerOpen(false)}
        onLoadMore={() => void loadMore().catch(report)}
        onSelect={openThread}
        onNewChat={newChat}
        onRename={onRename}
        onArchive={onArchive}
        onDelete={onDelete}
        onSignOut={getToken() === null ? null : signOut}
      />
      <main className="main">
        <header className="topbar">
          <button
            type="button"
            className="icon-btn menu-btn"
            data-testid="menu"
            aria-label="Open the chat list"
            aria-expanded={drawerOpen}
            onClick={() => setDrawerOpen(true)}
          >
            <MenuIcon />
          </button>
          <div className="topbar-title" data-testid="chat-title">
            {title}
            {current?.status === "archived" ? <span className="status-tag">Archived</span> : null}
          </div>
          <button
            type="button"
            className="icon-btn topbar-new"
            data-testid="new-chat-mobile"
            aria-label="New chat"
            onClick={newChat}
          >
            <PlusIcon />
          </button>
        </header>
        <ChatPage
          key={route.threadId}
          threadId={route.threadId}
          isNew={route.isNew}
          onFirstSend={onFirstSend}
          onTurnFinished={(id, ok) => void onTurnFinished(id, ok)}
          onThreadActivity={refreshQuietly}
          onNewChat={newChat}
        />
      </main>
      {toast ? (
        <div className="toast" role="status" data-testid="toast">
          {toast}
          <button type="button" className="icon-btn" aria-label="Dismiss" onClick={() => setToast(null)}>
            ×
          </button>
        </div>
      ) : null}
    </div>
  );
}
