// The thread list: new chat, the regular threads grouped by date, the archived ones in a collapsible section;
// rename inline, archive/unarchive, delete after an in-page confirmation; sign out when a token is kept. On phones
// it is a drawer.
//
// A row's title has the row's whole width: its actions (rename, archive, delete) show over its end only on hover or
// keyboard focus, and are not there (not clickable, not focusable) otherwise. Where there is no hover (touch
// screens) or no room (below 768 px), a single "more" button per row shows them.

import { useEffect, useRef, useState } from "react";
import type { Thread } from "./api";
import { ConfirmDialog } from "./ConfirmDialog";
import { ArchiveIcon, MoreIcon, PencilIcon, PlusIcon, SignOutIcon, TrashIcon, UnarchiveIcon, XIcon } from "./icons";

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
  /** set when this browser keeps a sign-in token: forget it */
  onSignOut: (() => void) | null;
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
  confirming,
  onSelect,
  onRename,
  onArchive,
  onAskDelete,
}: {
  thread: Thread;
  active: boolean;
  /** its deletion is being asked: its actions stay shown, so focus can come back to them */
  confirming: boolean;
  onSelect: (id: string) => void;
  onRename: (id: string, title: string) => Promise<void>;
  onArchive: (id: string, archived: boolean) => Promise<void>;
  onAskDelete: (thread: Thread) => void;
}) {
  const label = thread.title || UNTITLED;
  const [renaming, setRenaming] = useState(false);
  const [title, setTitle] = useState(label);
  // The actions, opened with the "more" button (touch screens and narrow windows).
  const [actionsOpen, setActionsOpen] = useState(false);
  const row = useRef<HTMLLIElement>(null);
  const input = useRef<HTMLInputElement>(null);
  const saving = useRef(false);

  useEffect(() => {
    if (renaming) {
      input.current?.focus();
      input.current?.select();
    }
  }, [renaming]);

  // Open actions close on a tap or click anywhere else (but in the confirmation they opened).
  useEffect(() => {
    if (!actionsOpen || confirming) return;
    const onPointerDown = (e: PointerEvent) => {
      if (!row.current?.contains(e.target as Node)) setActionsOpen(false);
    };
    document.addEventListener("pointerdown", onPointerDown);
    return () => document.removeEventListener("pointerdown", onPointerDown);
  }, [actionsOpen, confirming]);

  const finishRename = async (save: boolean) => {
    if (saving.current) return;
    const next = title.trim();
    // The box starts with the title shown ("New chat" for an untitled thread): saving it unchanged changes nothing.
    if (save && next && next !== label) {
      saving.current = true;
      try {
        await onRename(thread.id, next);
      } finally {
        saving.current = false;
      }
    }
    setRenaming(false);
  };

  const act = (action: () => void) => () => {
    setActionsOpen(false);
    action();
  };

  const archived = thread.status === "archived";
  return (
    <li
      ref={row}
      className={["thread", active && "thread-active", actionsOpen && "thread-actions-open", confirming && "thread-confirming"]
        .filter(Boolean)
        .join(" ")}
      data-testid="thread"
      data-thread-id={thread.id}
      data-status={thread.status}
      onKeyDown={(e) => {
        if (e.key === "Escape" && actionsOpen) {
          e.stopPropagation();
          setActionsOpen(false);
        }
      }}
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
              e.stopPropagation();
              setTitle(label);
              void finishRename(false);
            }
          }}
          onBlur={() => void finishRename(true)}
        />
      ) : (
        <>
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
          {/* Before the actions it shows, so Tab goes from it into them. */}
          <button
            type="button"
            className="icon-btn thread-more"
            data-testid="thread-more"
            aria-label={`Actions for “${label}”`}
            aria-expanded={actionsOpen}
            title="More"
            onClick={() => setActionsOpen((open) => !open)}
          >
            <MoreIcon />
          </button>
          <div className="thread-actions">
            <button
              type="button"
              className="icon-btn"
              data-testid="thread-rename"
              aria-label={`Rename “${label}”`}
              title="Rename"
              onClick={act(() => {
                setTitle(label);
                setRenaming(true);
              })}
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
                onClick={act(() => void onArchive(thread.id, false))}
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
                onClick={act(() => void onArchive(thread.id, true))}
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
        </>
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
  onSignOut,
}: SidebarProps) {
  const regular = threads.filter((t) => t.status !== "archived");
  const archived = threads.filter((t) => t.status === "archived");
  const activeIsArchived = archived.some((t) => t.id === activeId);
  const [archivedOpen, setArchivedOpen] = useState(false);
  // The thread whose deletion waits for a yes.
  const [deleting, setDeleting] = useState<Thread | null>(null);
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

  const item = (thread: Thread) => (
    <ThreadItem
      key={thread.id}
      thread={thread}
      active={thread.id === activeId}
      confirming={thread.id === deleting?.id}
      onSelect={onSelect}
      onRename={onRename}
      onArchive={archive}
      onAskDelete={setDeleting}
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
        {onSignOut ? (
          <div className="sidebar-foot">
            <button type="button" className="btn btn-sm sign-out" data-testid="sign-out" onClick={onSignOut}>
              <SignOutIcon />
              Sign out
            </button>
          </div>
        ) : null}
      </aside>
      {deleting ? (
        <ConfirmDialog
          title="Delete this chat?"
          confirmLabel="Delete"
          onCancel={() => setDeleting(null)}
          onConfirm={() => {
            setDeleting(null);
            void onDelete(deleting.id);
          }}
        >
          “{deleting.title || UNTITLED}” and all its messages will be deleted for good. This cannot be undone.
        </ConfirmDialog>
      ) : null}
    </>
  );
}
