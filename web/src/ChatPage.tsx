// One thread: loads its active branch, then runs useChat on it (send, stop, regenerate, edit, branches, resume).

import { Chat, useChat } from "@ai-sdk/react";
import {
  DefaultChatTransport,
  type FileUIPart,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  type UIMessage,
} from "ai";
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import {
  ApiError,
  activeBranch,
  authFetch,
  authHeaders,
  describeError,
  historyRows,
  isNetworkError,
  stopGeneration,
  updateThread,
} from "./api";
import { Composer, type ComposerHandle } from "./Composer";
import { suggestions } from "./config";
import { ArrowDownIcon } from "./icons";
import { ScrollRoot } from "./Markdown";
import { Message, messageText } from "./Message";
import { buildTree, emptyTree, type MessageTree, newestDescendant } from "./tree";

type LoadState =
  | { kind: "loading" }
  | { kind: "ready"; messages: UIMessage[] }
  | { kind: "missing" }
  | { kind: "failed"; message: string };

export interface ChatCallbacks {
  /** the first reply of a new chat has started: the thread exists, the URL becomes /chat/{id} */
  onFirstSend: (threadId: string) => void;
  /** a reply ended (or failed): refresh the thread list, title a new thread */
  onTurnFinished: (threadId: string, ok: boolean) => void;
  /** something changed the thread (a reply started, the branch changed): refresh the thread list */
  onThreadActivity: () => void;
  /** start a new chat */
  onNewChat: () => void;
}

export function ChatPage({ threadId, isNew, ...callbacks }: { threadId: string; isNew: boolean } & ChatCallbacks) {
  const [state, setState] = useState<LoadState>(isNew ? { kind: "ready", messages: [] } : { kind: "loading" });
  const [attempt, setAttempt] = useState(0);
  // `isNew` is read once: when a new chat sends its first message the route changes to /chat/{id}, but this
  // component stays mounted (same key) and keeps its useChat state.
  const [mountedAsNew] = useState(isNew);

  useEffect(() => {
    if (mountedAsNew) return;
    let cancelled = false;
    activeBranch(threadId).then(
      (messages) => {
        if (!cancelled) setState({ kind: "ready", messages });
      },
      (error: unknown) => {
        if (cancelled) return;
        if (error instanceof ApiError && (error.status === 404 || error.status === 422)) setState({ kind: "missing" });
        else setState({ kind: "failed", message: describeError(error) });
      },
    );
    return () => {
      cancelled = true;
    };
  }, [threadId, mountedAsNew, attempt]);

  if (state.kind === "loading") {
    return (
      <div className="chat-center" data-testid="loading">
        <div className="spinner spinner-lg" aria-label="Loading" />
      </div>
    );
  }
  if (state.kind === "missing") {
    return (
      <div className="chat-center" data-testid="not-found">
        <h2>This chat does not exist</h2>
        <p className="muted">It may have been deleted, or the link is wrong.</p>
        <a
          className="btn btn-primary"
          href="/"
          data-testid="start-new-chat"
          onClick={(e) => {
            e.preventDefault();
            callbacks.onNewChat();
          }}
        >
          Start a new chat
        </a>
      </div>
    );
  }
  if (state.kind === "failed") {
    return (
      <div className="chat-center" data-testid="load-error">
        <h2>Could not load this chat</h2>
        <p className="muted">{state.message}</p>
        <button type="button" className="btn btn-primary" onClick={() => {
          setState({ kind: "loading" });
          setAttempt((n) => n + 1);
        }}>
          Try again
        </button>
      </div>
    );
  }
  return <ChatSession threadId={threadId} isNew={mountedAsNew} initialMessages={state.messages} {...callbacks} />;
}

/** Files as a FileList, for useChat's `sendMessage({ text, files })`, which turns them into `file` parts with
 * data URLs. */
function toFileList(files: File[]): FileList {
  const transfer = new DataTransfer();
  for (const file of files) transfer.items.add(file);
  return transfer.files;
}

type LastAction = "send" | "regenerate" | "edit" | "resume" | "approval";

function ChatSession({
  threadId,
  isNew,
  initialMessages,
  onFirstSend,
  onTurnFinished,
  onThreadActivity,
}: { threadId: string; isNew: boolean; initialMessages: UIMessage[] } & ChatCallbacks) {
  const exists = useRef(!isNew);
  const lastAction = useRef<LastAction>(isNew ? "send" : "resume");
  const [tree, setTree] = useState<MessageTree>(emptyTree);
  const treeRef = useRef(tree);
  treeRef.current = tree;

  const loadTree = useCallback(async () => {
    if (!exists.current) return;
    try {
      setTree(buildTree(await historyRows(threadId)));
    } catch {
      // the branch picker just stays as it was
    }
  }, [threadId]);

  const finished = useRef<(ok: boolean) => void>(() => {});
  finished.current = (ok: boolean) => {
    void loadTree();
    onTurnFinished(threadId, ok);
  };

  // The Chat lives as long as this component (one per thread id). The transport sends only the last message:
  // the server has the rest of the branch (and the message tree), so attachments are not re-sent every turn.
  const [chat] = useState(
    () =>
      new Chat<UIMessage>({
        id: threadId,
        messages: initialMessages,
        transport: new DefaultChatTransport<UIMessage>({
          api: "/api/chat",
          headers: () => authHeaders(),
          fetch: authFetch,
          prepareSendMessagesRequest: ({ id, messages, trigger, messageId, body }) => ({
            body: { ...body, id, message: messages.at(-1), trigger, messageId },
          }),
        }),
        sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
        onFinish: ({ isError, isAbort }) => finished.current(!isError && !isAbort),
      }),
  );
  // A reload while a reply streams picks it up again: GET /api/chat/{id}/stream (204 when nothing streams).
  // A brand-new chat has nothing to resume.
  const [resume] = useState(!isNew);
  const { messages, status, error, sendMessage, regenerate, stop, clearError, addToolApprovalResponse } = useChat({
    chat,
    resume,
    // No throttle: the status and the text must change together (a throttled text could still be catching up
    // when the stop button has already gone).
  });
  useEffect(() => () => void chat.stop(), [chat]);

  const [draft, setDraft] = useState("");
  const [files, setFiles] = useState<File[]>([]);
  const [stopping, setStopping] = useState(false);
  const [switching, setSwitching] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const lastSent = useRef<{ text: string; files: File[] } | null>(null);
  const restored = useRef<string | null>(null);
  const composer = useRef<ComposerHandle>(null);

  const requesting = status === "submitted" || status === "streaming";
  const busy = requesting || switching;
  // Counts the requests this tab starts (send, regenerate, edit), so late work of an older one can tell.
  const requestCount = useRef(0);

  useEffect(() => {
    void loadTree();
  }, [loadTree]);

  // A new chat becomes a thread when its first reply starts (the server created it on the first POST /api/chat):
  // only then does `/` become `/chat/{id}`, and the thread shows up in the sidebar. A short reply may start and
  // end between two renders (the status goes from "submitted" straight to "ready"), so a reply in the list counts
  // as a start too.
  const announced = useRef(!isNew);
  const replied = messages.some((m) => m.role === "assistant");
  useEffect(() => {
    if ((status === "streaming" || replied) && !announced.current) {
      announced.current = true;
      exists.current = true;
      onFirstSend(threadId);
      onThreadActivity();
    }
  }, [status, replied, threadId, onFirstSend, onThreadActivity]);

  // A failed send keeps what was typed: if the request failed before any reply, the text goes back into the
  // composer (sending it again replaces the failed message).
  useEffect(() => {
    if (status === "streaming") lastSent.current = null;
    if (status !== "error") return;
    const sent = lastSent.current;
    lastSent.current = null;
    if (sent && chat.messages.at(-1)?.role === "user") {
      setDraft((current) => (current ? current : sent.text));
      setFiles((current) => (current.length ? current : sent.files));
      restored.current = sent.text;
      composer.current?.focus();
    }
  }, [status, chat]);

  // ---- scrolling: follow the reply while the reader is at the bottom; away from it, offer a way back
  const scroller = useRef<HTMLDivElement | null>(null);
  const [scrollRoot, setScrollRoot] = useState<HTMLDivElement | null>(null);
  const setScroller = useCallback((el: HTMLDivElement | null) => {
    scroller.current = el;
    setScrollRoot(el);
  }, []);
  const atBottom = useRef(true);
  const [contentBelow, setContentBelow] = useState(false);
  // Called whenever the content or the scroll position changes: at the bottom, stay there; else say so.
  const follow = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    setContentBelow(!atBottom.current && el.scrollHeight - el.scrollTop - el.clientHeight >= 1);
  }, []);
  useLayoutEffect(follow, [messages, status, follow]);
  // Content that grows by itself (a long message's chunks rendering, an image loading) keeps the reader at the
  // bottom too.
  useEffect(() => {
    const el = scrollRoot;
    const content = el?.firstElementChild;
    if (!el || !content) return;
    const observer = new ResizeObserver(follow);
    observer.observe(content);
    return () => observer.disconnect();
  }, [scrollRoot, follow]);
  const onScroll = () => {
    const el = scroller.current;
    if (el) atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    follow();
  };
  const toBottom = () => {
    atBottom.current = true;
    follow();
  };

  // ---- actions

  const send = () => {
    const text = draft.trim();
    const attached = files;
    if (!text && attached.length === 0) return;
    setDraft("");
    setFiles([]);
    void submit(text, attached);
  };

  const submit = async (text: string, attached: File[]) => {
    const last = chat.messages.at(-1);
    const replaceFailed = chat.status === "error" && last?.role === "user" ? last.id : undefined;
    setNotice(null);
    restored.current = null;
    lastSent.current = { text, files: attached };
    lastAction.current = "send";
    requestCount.current += 1;
    atBottom.current = true;
    exists.current = true; // the first POST /api/chat creates the thread
    const fileList = attached.length ? toFileList(attached) : undefined;
    if (text) await sendMessage({ text, files: fileList, messageId: replaceFailed });
    else if (fileList) await sendMessage({ files: fileList, messageId: replaceFailed });
  };

  const stopReply = async () => {
    const beforeStart = chat.status === "submitted";
    const request = requestCount.current;
    setStopping(true);
    try {
      // The server keeps generating when the client only disconnects: stop it there first (it returns once the
      // partial reply is stored and every reader's stream has ended, so this tab has received all of it), then
      // stop reading.
      await stopGeneration(threadId);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) setNotice(describeError(e));
    } finally {
      await stop();
      setStopping(false);
      void loadTree();
    }
    if (!beforeStart) return;
    // Stopped before the server had started the reply: the request may still have reached it. Stop again a
    // moment later and show what the server kept, unless a new request has started meanwhile.
    await new Promise((resolve) => window.setTimeout(resolve, 400));
    if (requestCount.current !== request) return;
    await stopGeneration(threadId).catch(() => {});
    try {
      const branch = await activeBranch(threadId);
      if (requestCount.current === request && chat.status !== "submitted" && chat.status !== "streaming") {
        chat.messages = branch;
      }
    } catch {
      // the thread was never created: keep the view as it is
    }
    void loadTree();
  };

  const clearRestoredDraft = () => {
    if (restored.current !== null && draft.trim() === restored.current) {
      setDraft("");
      setFiles([]);
    }
    restored.current = null;
  };

  const retry = async () => {
    const failure = chat.error;
    setNotice(null);
    clearError();
    if (isNetworkError(failure) || lastAction.current === "resume") {
      // The connection dropped: take what the server has, pick up a reply still streaming, and ask again what
      // it did not get (or did not answer).
      const unsent = chat.messages.at(-1)?.role === "user" ? chat.messages.at(-1) : undefined;
      try {
        chat.messages = await activeBranch(threadId);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) {
          setNotice(describeError(e));
          return;
        }
        chat.messages = [];
      }
      lastAction.current = "resume";
      await chat.resumeStream();
      if (chat.status === "error") return;
      const last = chat.messages.at(-1);
      if (last?.role === "user") {
        // the prompt was stored but never answered
        clearRestoredDraft();
        lastAction.current = "regenerate";
        requestCount.current += 1;
        await regenerate();
      } else if (unsent && !chat.messages.some((m) => m.id === unsent.id)) {
        // the prompt never reached the server: send it again
        clearRestoredDraft();
        lastSent.current = { text: messageText(unsent), files: [] };
        lastAction.current = "send";
        requestCount.current += 1;
        exists.current = true;
        await sendMessage({ id: unsent.id, parts: unsent.parts, metadata: unsent.metadata });
      }
      void loadTree();
      return;
    }
    clearRestoredDraft();
    lastAction.current = "regenerate";
    requestCount.current += 1;
    await regenerate();
  };

  // The last reply's regenerate button, or a failed reply's Retry (any failed reply: the server keeps it and adds
  // the new reply as its sibling).
  const onRegenerate = useCallback(
    (messageId?: string) => {
      setNotice(null);
      lastAction.current = "regenerate";
      requestCount.current += 1;
      atBottom.current = true;
      void regenerate({ messageId });
    },
    [regenerate],
  );

  const onEdit = useCallback(
    (messageId: string, text: string, keptFiles: FileUIPart[]) => {
      setNotice(null);
      lastAction.current = "edit";
      requestCount.current += 1;
      atBottom.current = true;
      // The server keeps the old version as a sibling branch; the edited text takes the message's id.
      void sendMessage({ text: text.trim(), files: keptFiles, messageId });
    },
    [sendMessage],
  );

  const onSwitchBranch = useCallback(
    async (messageId: string, delta: -1 | 1) => {
      const current = treeRef.current;
      const info = current.branches.get(messageId);
      const target = info?.siblings[info.index + delta];
      if (!target) return;
      setSwitching(true);
      setNotice(null);
      try {
        // The branch shown is the thread's head: make the newest message under the chosen sibling the head,
        // then load that branch.
        await updateThread(threadId, { headId: newestDescendant(current.rows, target) });
        const branch = await activeBranch(threadId);
        clearError();
        chat.messages = branch;
        await loadTree();
        onThreadActivity();
      } catch (e) {
        setNotice(describeError(e));
      } finally {
        setSwitching(false);
      }
    },
    [threadId, chat, clearError, loadTree, onThreadActivity],
  );

  const onApproval = useCallback(
    (approvalId: string, approved: boolean) => {
      lastAction.current = "approval";
      void addToolApprovalResponse({ id: approvalId, approved });
    },
    [addToolApprovalResponse],
  );

  const lastIndex = messages.length - 1;
  const waiting = status === "submitted" && messages.at(-1)?.role === "user";
  const bannerText = error ? describeError(error) : notice;

  return (
    <div className="chat">
      <div className="messages" ref={setScroller} onScroll={onScroll} data-testid="messages">
        <div className="messages-inner">
          {messages.length === 0 ? (
            <div className="empty" data-testid="empty-chat">
              <h1>What can I help with?</h1>
              <p className="muted">Ask anything. Your chats are kept on this chatkeep server.</p>
              {suggestions.length > 0 ? (
                <div className="suggestions" role="group" aria-label="Try one of these">
                  {suggestions.map((suggestion, index) => (
                    <button
                      key={index}
                      type="button"
                      className="suggestion"
                      data-testid="suggestion"
                      disabled={busy}
                      onClick={() => void submit(suggestion.prompt, [])}
                    >
                      <span className="suggestion-label">{suggestion.label}</span>
                      <span className="suggestion-prompt">{suggestion.prompt.replace(/\s+/g, " ")}</span>
                    </button>
                  ))}
                </div>
              ) : null}
            </div>
          ) : null}
          <ScrollRoot value={scrollRoot}>
            {messages.map((message, index) => (
              <Message
                key={message.id}
                message={message}
                streaming={status === "streaming" && index === lastIndex && message.role === "assistant"}
                busy={busy}
                canRegenerate={message.role === "assistant" && index === lastIndex}
                branch={tree.branches.get(message.id)}
                storedStatus={tree.status.get(message.id)}
                onRegenerate={onRegenerate}
                onEdit={onEdit}
                onSwitchBranch={onSwitchBranch}
                onApproval={onApproval}
              />
            ))}
          </ScrollRoot>
          {waiting ? (
            <div className="message message-assistant pending" aria-live="polite">
              <div className="typing" aria-label="Waiting for the reply">
                <span />
                <span />
                <span />
              </div>
            </div>
          ) : null}
        </div>
      </div>
      <div className="composer-area">
        {contentBelow ? (
          <button
            type="button"
            className="icon-btn scroll-bottom"
            data-testid="scroll-bottom"
            aria-label="Scroll to the latest message"
            title="Scroll to the latest message"
            onClick={toBottom}
          >
            <ArrowDownIcon />
          </button>
        ) : null}
        {bannerText ? (
          <div className="error-banner" role="alert" data-testid="error-banner">
            <span className="error-text">{bannerText}</span>
            <div className="error-actions">
              {error ? (
                <button type="button" className="btn btn-sm" data-testid="retry" disabled={busy} onClick={() => void retry()}>
                  Retry
                </button>
              ) : null}
              <button
                type="button"
                className="icon-btn"
                aria-label="Dismiss"
                data-testid="dismiss-error"
                onClick={() => {
                  setNotice(null);
                  clearError();
                }}
              >
                ×
              </button>
            </div>
          </div>
        ) : null}
        <Composer
          ref={composer}
          value={draft}
          onChange={setDraft}
          files={files}
          onFilesChange={setFiles}
          busy={requesting}
          disabled={switching}
          stopping={stopping}
          onSend={send}
          onStop={() => void stopReply()}
        />
        <div className="composer-hint muted">Enter to send · Shift+Enter for a new line</div>
      </div>
    </div>
  );
}
