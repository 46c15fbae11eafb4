// Markdown, safely: react-markdown builds React elements from the Markdown syntax tree and never injects HTML.
// Raw HTML in the text (from the model or the user) is shown as literal text (no rehype-raw),
// react-markdown's default URL filter drops `javascript:` and other unsafe link targets, and images from other
// sites wait for a click (RemoteImage.tsx).
//
// And in bounded time: long text is split into chunks at block boundaries (blocks.ts), each parsed on its own and
// only when it comes near the screen, one chunk per task, so no message the API accepts (4 M characters) blocks
// the page, and a streamed reply re-parses only its last chunk.

import {
  createContext,
  memo,
  type ReactNode,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
} from "react";
import { flushSync } from "react-dom";
import ReactMarkdown, { type Components } from "react-markdown";
import remarkGfm from "remark-gfm";
import { CHUNK_TARGET, type Chunk, hasDefinitions, MarkdownSplitter, WHOLE_MAX } from "./blocks";
import { copyText } from "./clipboard";
import { CheckIcon, CopyIcon } from "./icons";
import { GatedImage } from "./RemoteImage";

/** The text under a hast node (structural, to avoid depending on hast's types). */
function nodeText(node: unknown): string {
  if (!node || typeof node !== "object") return "";
  const n = node as { type?: unknown; value?: unknown; children?: unknown };
  if (n.type === "text" && typeof n.value === "string") return n.value;
  if (Array.isArray(n.children)) return n.children.map(nodeText).join("");
  return "";
}

function codeLanguage(node: unknown): string | null {
  const children = (node as { children?: unknown } | undefined)?.children;
  if (!Array.isArray(children)) return null;
  const code = children[0] as { tagName?: unknown; properties?: { className?: unknown } } | undefined;
  if (!code || code.tagName !== "code") return null;
  const classes = code.properties?.className;
  if (!Array.isArray(classes)) return null;
  for (const name of classes) {
    if (typeof name === "string" && name.startsWith("language-")) return name.slice("language-".length);
  }
  return null;
}

type Highlighter = typeof import("./highlight");
let highlighter: Highlighter | null = null;
let loadingHighlighter: Promise<Highlighter> | null = null;

/** The highlighter once it is loaded; `wanted` loads it (once for the page, in a chunk of its own). */
function useHighlighter(wanted: boolean): Highlighter | null {
  const [loaded, setLoaded] = useState(highlighter);
  useEffect(() => {
    if (!wanted || loaded) return;
    let live = true;
    loadingHighlighter ??= import("./highlight").then(
      (module) => (highlighter = module),
      (error: unknown) => {
        loadingHighlighter = null; // try again with the next code block
        throw error;
      },
    );
    loadingHighlighter.then(
      (module) => live && setLoaded(module),
      () => {}, // the code stays plain
    );
    return () => {
      live = false;
    };
  }, [wanted, loaded]);
  return loaded;
}

/** A fenced code block: highlighted when its fence names a language the highlighter knows (no guessing: an
 * unnamed or unknown language stays plain), with a copy button. Blocks are bounded in size (blocks.ts), and a
 * streaming one is highlighted again at most once a frame, as its text changes. */
function CodeBlock({ node, children }: { node?: unknown; children?: ReactNode }) {
  const [copied, setCopied] = useState(false);
  const language = codeLanguage(node);
  const code = nodeText(node);
  const hl = useHighlighter(language !== null);
  const tokens = useMemo(() => (hl && language ? hl.highlight(code, language) : null), [hl, code, language]);
  const copy = async () => {
    if (await copyText(code.replace(/\n$/, ""))) {
      setCopied(true);
      window.setTimeout(() => setCopied(false), 1500);
    }
  };
  return (
    <div className="codeblock">
      <div className="codeblock-bar">
        <span className="codeblock-lang">{language ?? "code"}</span>
        <button type="button" className="codeblock-copy" onClick={copy} aria-label="Copy code" data-testid="copy-code">
          {copied ? <CheckIcon /> : <CopyIcon />}
          <span>{copied ? "Copied" : "Copy"}</span>
        </button>
      </div>
      <pre>{tokens ? <code className={`hljs language-${language}`}>{tokens}</code> : children}</pre>
    </div>
  );
}

const components: Components = {
  pre: ({ node, children }) => <CodeBlock node={node}>{children}</CodeBlock>,
  // Links open in a new tab; a link whose target was dropped as unsafe (`javascript:`…) is plain text.
  a: ({ node: _node, href, children, ...rest }) =>
    href ? (
      <a {...rest} href={href} target="_blank" rel="noopener noreferrer nofollow">
        {children}
      </a>
    ) : (
      <span className="link-dropped">{children}</span>
    ),
  img: ({ src, alt }) => (typeof src === "string" && src ? <GatedImage src={src} alt={alt ?? ""} /> : null),
  table: ({ node: _node, children, ...rest }) => (
    <div className="table-wrap">
      <table {...rest}>{children}</table>
    </div>
  ),
};

const remarkPlugins = [remarkGfm];

/** One piece of Markdown, parsed and rendered whole. */
const MarkdownBlock = memo(function MarkdownBlock({ text }: { text: string }) {
  return (
    <ReactMarkdown remarkPlugins={remarkPlugins} components={components}>
      {text}
    </ReactMarkdown>
  );
});

/** The scrolling element the messages are in: chunks start rendering a screen before they scroll into it. */
export const ScrollRoot = createContext<HTMLElement | null>(null);

// Chunks that came near the screen wait here and are rendered one per task, so the page answers input between
// two of them however many scroll into view at once (a chunk is parsed in tens of milliseconds).
const pending: Array<() => void> = [];
let drainTimer = 0;

function drain(): void {
  drainTimer = 0;
  pending.shift()?.();
  if (pending.length > 0) drainTimer = window.setTimeout(drain, 0);
}

function schedule(job: () => void): () => void {
  pending.push(job);
  if (!drainTimer) drainTimer = window.setTimeout(drain, 0);
  return () => {
    const at = pending.indexOf(job);
    if (at >= 0) pending.splice(at, 1);
  };
}

/** A rough height for a chunk not laid out yet (content-visibility skips it), so the scrollbar is about right. */
function estimatedHeight(text: string): number {
  let lines = 1;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) lines++;
  return Math.round((lines + text.length / 90) * 14);
}

/**
 * A chunk of a long message. Shown as its source text until it nears the screen, then as Markdown (`eager`:
 * right away). Plain chunks (pieces of a block too long to parse in one go) stay source text.
 */
const MarkdownChunk = memo(function MarkdownChunk({ chunk, eager }: { chunk: Chunk; eager: boolean }) {
  const { text, plain } = chunk;
  const root = useContext(ScrollRoot);
  const ref = useRef<HTMLDivElement>(null);
  const [rendered, setRendered] = useState(eager);
  useEffect(() => {
    const el = ref.current;
    if (plain || rendered || !el) return;
    let cancel = () => {};
    const observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((e) => e.isIntersecting)) return;
        observer.disconnect();
        cancel = schedule(() => flushSync(() => setRendered(true)));
      },
      { root, rootMargin: "100% 0px" },
    );
    observer.observe(el);
    return () => {
      observer.disconnect();
      cancel();
    };
  }, [plain, rendered, root]);
  const height = useMemo(() => estimatedHeight(text), [text]);
  const style = { containIntrinsicSize: `auto ${height}px` };
  if (plain || !rendered) {
    return (
      <div ref={ref} className="md-chunk md-source" data-testid="md-source" style={style}>
        {text}
      </div>
    );
  }
  return (
    <div ref={ref} className="md-chunk" style={style}>
      <MarkdownBlock text={text} />
    </div>
  );
});

/**
 * While a reply streams, the text shown follows the text received at most once a frame: a reply arrives in
 * thousands of small deltas, each a render, and parsing the last chunk again for every one of them would make
 * the page fall behind a fast stream. Once the reply ends (`live` false) the whole text shows in the same render.
 */
function useFrameText(text: string, live: boolean): string {
  const [shown, setShown] = useState(text);
  const latest = useRef(text);
  latest.current = text;
  const frame = useRef(0);
  useEffect(() => {
    if (!live || frame.current) return;
    frame.current = window.requestAnimationFrame(() => {
      frame.current = 0;
      setShown(latest.current);
    });
  }, [live, text]);
  useEffect(() => () => window.cancelAnimationFrame(frame.current), []);
  return live ? shown : text;
}

/**
 * Markdown of any length: whole when short, else in chunks (see the top of this file and blocks.ts). `live`: the
 * text is a reply streaming in (shown at most once a frame).
 */
export const Markdown = memo(function Markdown({ text: received, live = false }: { text: string; live?: boolean }) {
  const text = useFrameText(received, live);
  const splitter = useRef<MarkdownSplitter | null>(null);
  // Chunks there at the first render wait until they near the screen; chunks added later (a reply streaming in)
  // are where the reader is, and are rendered right away.
  const firstCount = useRef<number | null>(null);
  const whole = text.length <= CHUNK_TARGET || (text.length <= WHOLE_MAX && hasDefinitions(text));
  const chunks = whole ? null : (splitter.current ??= new MarkdownSplitter()).split(text);
  firstCount.current ??= chunks?.length ?? 1;
  if (!chunks) return <MarkdownBlock text={text} />;
  const first = firstCount.current;
  return (
    <>
      {chunks.map((chunk, index) => (
        <MarkdownChunk key={index} chunk={chunk} eager={first === 1 || index >= first} />
      ))}
    </>
  );
});
