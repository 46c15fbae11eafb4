// The thread list: new chat, the regular threads grouped by date, the archived ones in a collapsible section;
// rename inline, archive/unarchive, delete after the browser's confirm(). On phones it is a drawer.

import { useEffect, useRef, useState } from "react";
import type { Thread } from "./api";
import { ArchiveIcon, PencilIcon, PlusIcon, TrashIcon, UnarchiveIcon, XIcon } from "./icons";

export const UNTITLED = "New chat";

interface SidebarProps {
  threads: Thread[];
  activeId: string | null;
  loaded: boolean;
  hasMore: boolean;
  open: boolean;
  onClose: () => void;
  onLoadMore: () => void;
  onSelect: (id: string) => void;
  onNewChat: () => void;
  onRename: (id: string, title: string) => Promise<void>;
  onArchive: (id: string, archived: boolean) => Promise<void>;
  onDelete: (id: string) => Promise<void>;
}

function dayGroup(iso: string, now: Date): string {
  const then = new Date(iso);
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 24 * 60 * 60 * 1000;
  const t = then.getTime();
  if (Number.isNaN(t) || t >= startOfToday) return "Today";
  if (t >= startOfToday - day) return "Yesterday";
  if (t >= startOfToday - 7 * day) return "Previous 7 days";
  if (t >= startOfToday - 30 * day) return "Previous 30 days";
  return "Older";
}

function ThreadItem({
  thread,
  active,
  onSelect,
  onRename,
  onArchive,
  onAskDelete,
}: {
  thread: Thread;
  active: boolean;
  onSelect: (id: string) => void;
  onRename: (id: string, title: string) => Promise<void>;
  onArchive: (id: string, archived: boolean) => Promise<void>;
  onAskDelete: (thread: Thread) => void;
}) {
  const [renaming, setRenaming] = useState(false);
  const [title, setTitle] = useState(thread.title ?? "");
  const input = useRef<HTMLInputElement>(null);
  const saving = useRef(false);

  useEffect(() => {
    if (renaming) {
      input.current?.focus();
      input.current?.select();
    }
  }, [renaming]);

  const finishRename = async (save: boolean) => {
    if (saving.current) return;
    const next = title.trim();
    if (save && next && next !== (thread.title ?? "")) {
      saving.current = true;
      try {
        await onRename(thread.id, next);
      } finally {
        saving.current = false;
      }
    }
    setRenaming(false);
  };

  const archived = thread.status === "archived";
  const label = thread.title || UNTITLED;
  return (
    <li
      className={`thread${active ? " thread-active" : ""}`}
      data-testid="thread"
      data-thread-id={thread.id}
      data-status={thread.status}
    >
      {renaming ? (
        <input
          ref={input}
          className="thread-rename-input"
          data-testid="thread-rename-input"
          aria-label="Chat title"
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              void finishRename(true);
            } else if (e.key === "Escape") {
              e.preventDefault();
              setTitle(thread.title ?? "");
              void finishRename(false);
            }
          }}
          onBlur={() => void finishRename(true)}
        />
      ) : (
        <a
          className="thread-link"
          href={`/chat/${encodeURIComponent(thread.id)}`}
          aria-current={active ? "page" : undefined}
          title={label}
          data-testid="thread-link"
          onClick={(e) => {
            if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
            e.preventDefault();
            onSelect(thread.id);
          }}
        >
          <span className="thread-title" data-testid="thread-title">
            {label}
          </span>
        </a>
      )}
      {renaming ? null : (
        <div className="thread-actions">
          <button
            type="button"
            className="icon-btn"
            data-testid="thread-rename"
            aria-label={`Rename “${label}”`}
            title="Rename"
            onClick={() => {
              setTitle(thread.title ?? "");
              setRenaming(true);
            }}
          >
            <PencilIcon />
          </button>
          {archived ? (
            <button
              type="button"
              className="icon-btn"
              data-testid="thread-unarchive"
              aria-label={`Unarchive “${label}”`}
              title="Unarchive"
              onClick={() => void onArchive(thread.id, false)}
            >
              <UnarchiveIcon />
            </button>
          ) : (
            <button
              type="button"
              className="icon-btn"
              data-testid="thread-archive"
              aria-label={`Archive “${label}”`}
              title="Archive"
              onClick={() => void onArchive(thread.id, true)}
            >
              <ArchiveIcon />
            </button>
          )}
          <button
            type="button"
            className="icon-btn icon-btn-danger"
            data-testid="thread-delete"
            aria-label={`Delete “${label}”`}
            title="Delete"
            onClick={() => onAskDelete(thread)}
          >
            <TrashIcon />
          </button>
        </div>
      )}
    </li>
  );
}

export function Sidebar({
  threads,
  activeId,
  loaded,
  hasMore,
  open,
  onClose,
  onLoadMore,
  onSelect,
  onNewChat,
  onRename,
  onArchive,
  onDelete,
}: SidebarProps) {
  const regular = threads.filter((t) => t.status !== "archived");
  const archived = threads.filter((t) => t.status === "archived");
  const activeIsArchived = archived.some((t) => t.id === activeId);
  const [archivedOpen, setArchivedOpen] = useState(false);
  useEffect(() => {
    if (activeIsArchived) setArchivedOpen(true);
  }, [activeIsArchived]);

  const now = new Date();
  const groups: { label: string; items: Thread[] }[] = [];
  for (const thread of regular) {
    const label = dayGroup(thread.updatedAt, now);
    const group = groups.at(-1);
    if (group && group.label === label) group.items.push(thread);
    else groups.push({ label, items: [thread] });
  }

  // Where an archived chat went: open the section when one is archived here.
  const archive = async (id: string, archive: boolean) => {
    if (archive) setArchivedOpen(true);
    await onArchive(id, archive);
  };

  // The browser's own confirmation: accessible, works the same on phones, and scripted browsers can answer it.
  const askDelete = (thread: Thread) => {
    if (window.confirm(`Delete “${thread.title || UNTITLED}” and all its messages? This cannot be undone.`)) {
      void onDelete(thread.id);
    }
  };

  const item = (thread: Thread) => (
    <ThreadItem
      key={thread.id}
      thread={thread}
      active={thread.id === activeId}
      onSelect={onSelect}
      onRename={onRename}
      onArchive={archive}
      onAskDelete={askDelete}
    />
  );

  return (
    <>
      <div className={`drawer-backdrop${open ? " drawer-backdrop-open" : ""}`} onClick={onClose} aria-hidden="true" />
      <aside className={`sidebar${open ? " sidebar-open" : ""}`} aria-label="Chats" data-testid="sidebar">
        <div className="sidebar-head">
          <a
            className="brand"
            href="/"
            onClick={(e) => {
              e.preventDefault();
              onNewChat();
            }}
          >
            <span className="brand-mark" aria-hidden="true" />
            chatkeep
          </a>
          <button type="button" className="icon-btn sidebar-close" aria-label="Close the chat list" onClick={onClose}>
            <XIcon />
          </button>
        </div>
        <button type="button" className="btn new-chat" data-testid="new-chat" onClick={onNewChat}>
          <PlusIcon />
          New chat
        </button>
        <nav className="thread-list">
          {loaded && threads.length === 0 ? <p className="muted sidebar-empty">No chats yet.</p> : null}
          {groups.map((group) => (
            <section key={group.label} className="thread-group">
              <h3>{group.label}</h3>
              <ul>{group.items.map(item)}</ul>
            </section>
          ))}
          {hasMore ? (
            <button type="button" className="btn btn-sm load-more" data-testid="load-more" onClick={onLoadMore}>
              Show more
            </button>
          ) : null}
          {archived.length > 0 ? (
            <details
              className="archived"
              data-testid="archived"
              open={archivedOpen}
              onToggle={(e) => setArchivedOpen(e.currentTarget.open)}
            >
              <summary data-testid="archived-toggle">Archived ({archived.length})</summary>
              <ul>{archived.map(item)}</ul>
            </details>
          ) : null}
        </nav>
      </aside>
    </>
  );
}
