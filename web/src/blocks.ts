// Splits long Markdown into chunks at block boundaries, so each chunk can be parsed and rendered on its own.
//
// Why: react-markdown (micromark + remark-gfm) parses the whole text on every render, in time that grows faster
// than the text on some constructs (a 1.5 M character message took 34 s to show, 3.9 M took 176 s, and a streamed
// reply re-parsed all of itself on every delta). Parsing bounded chunks bounds the work of each one; keeping the
// chunks that are done (same strings) lets React skip them, so a streamed reply re-parses only its last chunk.
//
// A chunk boundary is the start of a line that begins a new top-level block: the line before it is blank, it is
// not indented (so it continues no list item or indented code) and it is outside a fenced code block. Such a cut
// changes nothing in how the blocks render, except that a list whose items are separated by blank lines may
// become two lists (ordered ones keep their numbers) and that reference-style link and footnote definitions apply
// within their chunk only (see `hasDefinitions`: such messages are rendered whole up to `WHOLE_MAX`).
//
// A block that cannot be cut (a code block, table or paragraph longer than `CHUNK_MAX`) is shown as its source
// text, in pieces of at most `CHUNK_MAX` characters: Markdown is rendered in bounded pieces or not at all.

/** Chunks close at the first block boundary after this many characters. */
export const CHUNK_TARGET = 4_000;
/** No chunk is longer; a block longer than this is shown as plain text. */
export const CHUNK_MAX = 16_000;
/** Messages with link or footnote definitions are rendered whole up to this length. */
export const WHOLE_MAX = 32_000;

export interface Chunk {
  text: string;
  /** true: part of a block too long to render as Markdown; shown as plain text */
  plain: boolean;
}

interface Fence {
  char: number;
  length: number;
}

/** The scanner's state at the start of a chunk, so scanning can resume there when the text grows. */
interface ResumePoint {
  start: number;
  /** the start of the line holding `start` (before it when a chunk starts inside an over-long line) */
  lineStart: number;
  /** the fenced code block open at `lineStart` */
  fence: Fence | null;
  /** the line before `lineStart` is blank */
  prevBlank: boolean;
  /** the chunk is a piece of an over-long block */
  plain: boolean;
}

const START: ResumePoint = { start: 0, lineStart: 0, fence: null, prevBlank: false, plain: false };
const BACKTICK = 0x60;
const TILDE = 0x7e;

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isBlank(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isSpace(text.charCodeAt(i))) return false;
  return true;
}

/** The fence state after the line [start, end) (CommonMark: up to 3 spaces, then 3+ backticks or tildes; a
 * closing fence is at least as long as the opening one and has nothing after it). */
function nextFence(fence: Fence | null, text: string, start: number, end: number): Fence | null {
  let i = start;
  while (i < end && i - start < 3 && text.charCodeAt(i) === 0x20) i++;
  const char = text.charCodeAt(i);
  if (char !== BACKTICK && char !== TILDE) return fence;
  let j = i;
  while (j < end && text.charCodeAt(j) === char) j++;
  const length = j - i;
  if (length < 3) return fence;
  if (fence === null) {
    // A backtick fence's info string may not contain backticks (then the line is not a fence).
    return char === BACKTICK && text.slice(j, end).includes("`") ? null : { char, length };
  }
  return char === fence.char && length >= fence.length && isBlank(text, j, end) ? null : fence;
}

/** Link reference or footnote definitions (`[x]: url`, `[^1]: note`): they apply across the whole message. */
export function hasDefinitions(text: string): boolean {
  return /^ {0,3}\[[^\]\n]+\]:/m.test(text);
}

/**
 * Splits Markdown into chunks, remembering where the last one starts: when the next text extends the previous
 * one (a streamed reply), only the last chunk is scanned again and the others are returned as the same strings.
 */
export class MarkdownSplitter {
  private text = "";
  private closed: Chunk[] = [];
  private tail: ResumePoint = START;
  private chunks: Chunk[] = [];

  split(text: string): Chunk[] {
    if (text === this.text) return this.chunks;
    if (!(this.text && text.length >= this.text.length && text.startsWith(this.text))) {
      this.closed = [];
      this.tail = START;
    }
    this.text = text;
    this.scan();
    const last = text.slice(this.tail.start);
    this.chunks = last ? [...this.closed, { text: last, plain: this.tail.plain }] : [...this.closed];
    return this.chunks;
  }

  /** Scans from the last chunk's start to the end of the text, closing chunks on the way. */
  private scan(): void {
    const text = this.text;
    let tail = this.tail;
    let { fence, prevBlank } = tail;
    // The last block boundary inside the current chunk (there may be some below the target size).
    let boundary = -1;
    const close = (next: ResumePoint) => {
      this.closed.push({ text: text.slice(tail.start, next.start), plain: tail.plain });
      tail = next;
      boundary = -1;
    };
    let ls = tail.lineStart;
    while (ls < text.length) {
      const newline = text.indexOf("\n", ls);
      const le = newline < 0 ? text.length : newline + 1;
      if (ls > tail.start && fence === null && prevBlank && !isSpace(text.charCodeAt(ls))) {
        if (tail.plain || ls - tail.start >= CHUNK_TARGET) {
          close({ start: ls, lineStart: ls, fence: null, prevBlank: true, plain: false });
        } else {
          boundary = ls;
        }
      }
      while (le - tail.start > CHUNK_MAX) {
        if (!tail.plain && boundary > tail.start) {
          // Cut at the last boundary: the blocks before it stay Markdown, the long one starts a chunk of its own.
          close({ start: boundary, lineStart: boundary, fence: null, prevBlank: true, plain: false });
          continue;
        }
        // An over-long block: plain text from here to its end, cut before this line or, for a line longer than
        // CHUNK_MAX, inside it (after a space when there is one in the second half).
        tail = { ...tail, plain: true };
        if (ls > tail.start) {
          close({ start: ls, lineStart: ls, fence, prevBlank, plain: true });
        } else {
          const limit = tail.start + CHUNK_MAX;
          const space = text.lastIndexOf(" ", limit - 1);
          const cut = space >= tail.start + CHUNK_MAX / 2 ? space + 1 : limit;
          close({ start: cut, lineStart: ls, fence, prevBlank, plain: true });
        }
      }
      if (newline < 0) break; // an unfinished last line: scanned again when the text grows
      fence = nextFence(fence, text, ls, le);
      prevBlank = isBlank(text, ls, le);
      ls = le;
    }
    this.tail = tail;
  }
}
