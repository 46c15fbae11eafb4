// The message tree of a thread, from GET /api/threads/{id}/messages (every branch, parents before children,
// the last row the newest). Edits and regenerations are siblings: messages with the same parent.

import type { HistoryRow } from "./api";

export interface BranchInfo {
  /** the ids of the message and its siblings, oldest first */
  siblings: string[];
  /** the message's position among them */
  index: number;
}

export interface MessageTree {
  branches: Map<string, BranchInfo>;
  status: Map<string, string>;
  rows: HistoryRow[];
}

export const emptyTree: MessageTree = { branches: new Map(), status: new Map(), rows: [] };

export function buildTree(rows: HistoryRow[]): MessageTree {
  const children = new Map<string | null, string[]>();
  const status = new Map<string, string>();
  for (const row of rows) {
    const list = children.get(row.parent_id) ?? [];
    list.push(row.id);
    children.set(row.parent_id, list);
    if (row.status) status.set(row.id, row.status);
  }
  const branches = new Map<string, BranchInfo>();
  for (const siblings of children.values()) {
    siblings.forEach((id, index) => branches.set(id, { siblings, index }));
  }
  return { branches, status, rows };
}

/** The newest message in the subtree under `id` (the message itself when it has no descendants): the leaf to
 * make the thread's head when switching to that branch. Rows come parents first, so one pass suffices. */
export function newestDescendant(rows: HistoryRow[], id: string): string {
  const inSubtree = new Set<string>([id]);
  let newest = id;
  for (const row of rows) {
    if (row.parent_id !== null && inSubtree.has(row.parent_id)) {
      inSubtree.add(row.id);
      newest = row.id;
    }
  }
  return newest;
}
