// One message of the active branch: its parts (text as Markdown, reasoning, tool calls, sources, files, data),
// its actions (copy, regenerate, edit) and the branch picker when it has siblings.

import {
  type DynamicToolUIPart,
  type FileUIPart,
  getToolName,
  isToolUIPart,
  type ToolUIPart,
  type UIMessage,
} from "ai";
import { memo, useEffect, useRef, useState } from "react";
import { copyText } from "./clipboard";
import {
  CheckIcon,
  ChevronLeftIcon,
  ChevronRightIcon,
  CopyIcon,
  FileIcon,
  LinkIcon,
  PencilIcon,
  RefreshIcon,
  WrenchIcon,
} from "./icons";
import { Markdown } from "./Markdown";
import { GatedImage } from "./RemoteImage";
import type { BranchInfo } from "./tree";

type Part = UIMessage["parts"][number];
type AnyToolPart = ToolUIPart | DynamicToolUIPart;

/** Only these URL schemes become links or image sources. */
export function safeUrl(url: string, schemes: readonly string[]): string | null {
  try {
    const parsed = new URL(url, window.location.href);
    return schemes.includes(parsed.protocol) ? url : null;
  } catch {
    return null;
  }
}

const WEB = ["http:", "https:"] as const;
const FILE_URL = ["http:", "https:", "data:", "blob:"] as const;

function json(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Why a reply failed, from its metadata `{"chatkeep": {"error": "…"}}`: the server stores it with a failed reply
 * (`GET /api/chat/{id}/messages` returns it) and streams it just before the `error` chunk, so useChat has it live
 * too. `null` for every other message. */
function failureText(message: UIMessage): string | null {
  const metadata = message.metadata as { chatkeep?: { error?: unknown } } | null | undefined;
  const error = metadata?.chatkeep?.error;
  return typeof error === "string" ? error : null;
}

export function messageText(message: UIMessage): string {
  return message.parts
    .filter((p): p is Extract<Part, { type: "text" }> => p.type === "text")
    .map((p) => p.text)
    .join("\n\n");
}

// ---- parts

const TOOL_STATE_LABELS: Record<string, string> = {
  "input-streaming": "Preparing",
  "input-available": "Running",
  "approval-requested": "Needs approval",
  "approval-responded": "Answered",
  "output-available": "Done",
  "output-error": "Error",
  "output-denied": "Denied",
};

function toolTone(state: string): string {
  if (state === "output-available") return "ok";
  if (state === "output-error" || state === "output-denied") return "bad";
  if (state === "approval-requested") return "warn";
  return "busy";
}

function ToolCard({
  part,
  stopped,
  onApproval,
}: {
  part: AnyToolPart;
  stopped: boolean;
  onApproval?: (approvalId: string, approved: boolean) => void;
}) {
  const name = getToolName(part);
  const state = part.state;
  const running = state === "input-streaming" || state === "input-available";
  const label = stopped && running ? "Stopped" : (TOOL_STATE_LABELS[state] ?? state);
  const tone = stopped && running ? "bad" : toolTone(state);
  return (
    <details className="tool" data-testid="tool" data-state={state} data-tool-name={name} open={state === "approval-requested" || undefined}>
      <summary>
        <span className="tool-icon">
          <WrenchIcon />
        </span>
        <span className="tool-name">{name}</span>
        <span className={`badge badge-${tone}`} data-testid="tool-state">
          {running && !stopped ? <span className="spinner" aria-hidden="true" /> : null}
          {label}
        </span>
      </summary>
      <div className="tool-body">
        <div className="tool-section">
          <div className="tool-label">Input</div>
          <pre data-testid="tool-input">{json(part.input) || "…"}</pre>
        </div>
        {state === "output-available" ? (
          <div className="tool-section">
            <div className="tool-label">Output</div>
            <pre data-testid="tool-output">{json(part.output)}</pre>
          </div>
        ) : null}
        {state === "output-error" ? (
          <div className="tool-section">
            <div className="tool-label">Error</div>
            <pre className="tool-error" data-testid="tool-output">
              {part.errorText}
            </pre>
          </div>
        ) : null}
        {state === "approval-requested" && onApproval ? (
          <div className="tool-approval">
            <span>Run this tool?</span>
            <button type="button" className="btn btn-primary btn-sm" data-testid="tool-approve" onClick={() => onApproval(part.approval.id, true)}>
              Approve
            </button>
            <button type="button" className="btn btn-sm" data-testid="tool-deny" onClick={() => onApproval(part.approval.id, false)}>
              Deny
            </button>
          </div>
        ) : null}
      </div>
    </details>
  );
}

function FilePart({ part }: { part: Pick<FileUIPart, "url" | "mediaType" | "filename"> }) {
  const url = safeUrl(part.url, FILE_URL);
  const name = part.filename ?? part.mediaType;
  if (url && part.mediaType.startsWith("image/")) {
    return (
      <GatedImage
        src={url}
        alt={part.filename ?? "image"}
        testId="attachment-image"
        wrap={(image) => (
          <a className="attachment-image" href={url} target="_blank" rel="noopener noreferrer" download={part.filename}>
            {image}
          </a>
        )}
      />
    );
  }
  return (
    <a
      className="attachment-file"
      href={url ?? undefined}
      rel="noopener noreferrer"
      download={part.filename ?? true}
      data-testid="attachment-file"
    >
      <FileIcon />
      <span className="attachment-name">{name}</span>
    </a>
  );
}

function Sources({ parts }: { parts: Part[] }) {
  const items = parts.filter((p) => p.type === "source-url" || p.type === "source-document");
  if (items.length === 0) return null;
  return (
    <div className="sources">
      <span className="sources-label">Sources</span>
      {items.map((p, i) => {
        if (p.type === "source-url") {
          const href = safeUrl(p.url, WEB);
          let host = p.url;
          try {
            host = new URL(p.url).hostname;
          } catch {
            // keep the raw text
          }
          return href ? (
            <a key={i} className="source" data-testid="source-link" href={href} target="_blank" rel="noopener noreferrer nofollow" title={p.url}>
              <LinkIcon />
              <span>{p.title || host}</span>
            </a>
          ) : (
            <span key={i} className="source">
              {p.title || p.url}
            </span>
          );
        }
        if (p.type === "source-document") {
          return (
            <span key={i} className="source" data-testid="source-document">
              <FileIcon />
              <span>{p.title}</span>
            </span>
          );
        }
        return null;
      })}
    </div>
  );
}

// ---- the branch picker

function BranchPicker({
  branch,
  disabled,
  onSwitch,
}: {
  branch: BranchInfo;
  disabled: boolean;
  onSwitch: (delta: -1 | 1) => void;
}) {
  const count = branch.siblings.length;
  return (
    <div className="branch-picker" data-testid="branch-picker">
      <button
        type="button"
        className="icon-btn"
        data-testid="branch-prev"
        aria-label="Previous version"
        disabled={disabled || branch.index === 0}
        onClick={() => onSwitch(-1)}
      >
        <ChevronLeftIcon />
      </button>
      <span className="branch-label" data-testid="branch-label">
        {branch.index + 1}/{count}
      </span>
      <button
        type="button"
        className="icon-btn"
        data-testid="branch-next"
        aria-label="Next version"
        disabled={disabled || branch.index === count - 1}
        onClick={() => onSwitch(1)}
      >
        <ChevronRightIcon />
      </button>
    </div>
  );
}

function CopyButton({ text }: { text: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className="icon-btn"
      data-testid="copy"
      aria-label="Copy message"
      title="Copy"
      onClick={async () => {
        if (await copyText(text)) {
          setCopied(true);
          window.setTimeout(() => setCopied(false), 1500);
        }
      }}
    >
      {copied ? <CheckIcon /> : <CopyIcon />}
    </button>
  );
}

// ---- the editor of a user message

function EditBox({ initial, onCancel, onSave }: { initial: string; onCancel: () => void; onSave: (text: string) => void }) {
  const [text, setText] = useState(initial);
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 320)}px`;
  }, [text]);
  const save = () => {
    if (text.trim()) onSave(text);
  };
  return (
    <div className="edit-box">
      <textarea
        ref={ref}
        data-testid="edit-input"
        aria-label="Edit message"
        value={text}
        rows={1}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            save();
          } else if (e.key === "Escape") {
            e.preventDefault();
            onCancel();
          }
        }}
      />
      <div className="edit-actions">
        <button type="button" className="btn btn-sm" data-testid="edit-cancel" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" className="btn btn-primary btn-sm" data-testid="edit-save" disabled={!text.trim()} onClick={save}>
          Send
        </button>
      </div>
    </div>
  );
}

// ---- the message

const STATUS_LABELS: Record<string, string> = {
  aborted: "Stopped",
  interrupted: "Interrupted",
  error: "Failed",
};

export interface MessageProps {
  message: UIMessage;
  /** this message is the one streaming right now */
  streaming: boolean;
  /** a request is running (no edits, regenerations or branch switches meanwhile) */
  busy: boolean;
  /** the last assistant message of the branch: it gets the regenerate button */
  canRegenerate: boolean;
  branch: BranchInfo | undefined;
  /** what the server stored about the message: complete, aborted, interrupted, error */
  storedStatus: string | undefined;
  /** regenerate the last reply, or (with its id) a failed one: the new reply is its sibling */
  onRegenerate: (messageId?: string) => void;
  onEdit: (messageId: string, text: string, files: FileUIPart[]) => void;
  onSwitchBranch: (messageId: string, delta: -1 | 1) => void;
  onApproval: (approvalId: string, approved: boolean) => void;
}

export const Message = memo(function Message({
  message,
  streaming,
  busy,
  canRegenerate,
  branch,
  storedStatus,
  onRegenerate,
  onEdit,
  onSwitchBranch,
  onApproval,
}: MessageProps) {
  const [editing, setEditing] = useState(false);
  const isUser = message.role === "user";
  const text = messageText(message);
  const files = message.parts.filter((p): p is FileUIPart => p.type === "file");
  const stopped = storedStatus === "aborted" || storedStatus === "interrupted" || storedStatus === "error";
  const hasBranches = branch !== undefined && branch.siblings.length > 1;
  const switchBranch = (delta: -1 | 1) => onSwitchBranch(message.id, delta);

  if (isUser) {
    return (
      <div className="message message-user" data-testid="message" data-role="user" data-message-id={message.id}>
        {editing ? (
          <EditBox
            initial={text}
            onCancel={() => setEditing(false)}
            onSave={(newText) => {
              setEditing(false);
              onEdit(message.id, newText, files);
            }}
          />
        ) : (
          <>
            {files.length > 0 ? (
              <div className="attachments">
                {files.map((f, i) => (
                  <FilePart key={i} part={f} />
                ))}
              </div>
            ) : null}
            {text ? (
              <div className="bubble">
                <div className="md" data-testid="message-text">
                  <Markdown text={text} />
                </div>
              </div>
            ) : null}
            <div className="message-actions">
              {hasBranches ? <BranchPicker branch={branch} disabled={busy} onSwitch={switchBranch} /> : null}
              {text ? <CopyButton text={text} /> : null}
              <button
                type="button"
                className="icon-btn"
                data-testid="edit"
                aria-label="Edit message"
                title="Edit"
                disabled={busy}
                onClick={() => setEditing(true)}
              >
                <PencilIcon />
              </button>
            </div>
          </>
        )}
      </div>
    );
  }

  const failure = failureText(message);
  const visible = message.parts.some(
    (p) =>
      (p.type === "text" && p.text) ||
      (p.type === "reasoning" && p.text) ||
      p.type === "file" ||
      p.type === "source-url" ||
      p.type === "source-document" ||
      p.type.startsWith("data-") ||
      isToolUIPart(p),
  );

  return (
    <div className="message message-assistant" data-testid="message" data-role="assistant" data-message-id={message.id}>
      <div className="assistant-body">
        {message.parts.map((part, index) => {
          if (part.type === "text") {
            if (!part.text) return null;
            return (
              <div key={index} className="md" data-testid="message-text">
                <Markdown text={part.text} live={streaming && part.state === "streaming"} />
              </div>
            );
          }
          if (part.type === "reasoning") {
            if (!part.text && part.state !== "streaming") return null;
            const thinking = streaming && part.state === "streaming";
            return (
              <details key={index} className="reasoning" data-testid="reasoning">
                <summary>{thinking ? "Thinking…" : "Reasoning"}</summary>
                <div className="reasoning-body md">
                  <Markdown text={part.text} live={thinking} />
                </div>
              </details>
            );
          }
          if (isToolUIPart(part)) {
            return <ToolCard key={index} part={part} stopped={stopped || (!streaming && !busy && part.state === "input-streaming")} onApproval={busy ? undefined : onApproval} />;
          }
          if (part.type === "file" || part.type === "reasoning-file") {
            return (
              <div key={index} className="attachments">
                <FilePart part={part} />
              </div>
            );
          }
          if (part.type.startsWith("data-")) {
            const data = (part as { data?: unknown }).data;
            return (
              <details key={index} className="data-part" data-testid="data-part" data-type={part.type}>
                <summary>{part.type.slice("data-".length)}</summary>
                <pre>{json(data)}</pre>
              </details>
            );
          }
          return null;
        })}
        {!visible && streaming ? (
          <div className="typing" aria-label="The assistant is typing">
            <span />
            <span />
            <span />
          </div>
        ) : null}
        <Sources parts={message.parts} />
        {failure !== null && !streaming ? (
          <div className="message-error" role="note" data-testid="message-error">
            <div className="message-error-body">
              <strong>This reply failed.</strong>{" "}
              <span data-testid="message-error-text">{failure}</span>
            </div>
            <button
              type="button"
              className="btn btn-sm"
              data-testid="message-retry"
              disabled={busy}
              onClick={() => onRegenerate(message.id)}
            >
              Retry
            </button>
          </div>
        ) : null}
      </div>
      {!streaming ? (
        <div className="message-actions">
          {hasBranches ? <BranchPicker branch={branch} disabled={busy} onSwitch={switchBranch} /> : null}
          {text ? <CopyButton text={text} /> : null}
          {canRegenerate ? (
            <button
              type="button"
              className="icon-btn"
              data-testid="regenerate"
              aria-label="Regenerate reply"
              title="Regenerate"
              disabled={busy}
              onClick={() => onRegenerate()}
            >
              <RefreshIcon />
            </button>
          ) : null}
          {storedStatus && STATUS_LABELS[storedStatus] ? (
            <span className="status-tag" data-testid="message-status">
              {STATUS_LABELS[storedStatus]}
            </span>
          ) : null}
        </div>
      ) : null}
    </div>
  );
});
