// Markdown, safely: react-markdown builds React elements from the Markdown syntax tree and never injects HTML.
// Raw HTML in the text (from the model or the user) is shown as literal text (no rehype-raw), and
// react-markdown's default URL filter drops `javascript:` and other unsafe link targets.

import { memo, type ReactNode, useState } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import remarkGfm from "remark-gfm";
import { copyText } from "./clipboard";
import { CheckIcon, CopyIcon } from "./icons";

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

function CodeBlock({ node, children }: { node?: unknown; children?: ReactNode }) {
  const [copied, setCopied] = useState(false);
  const language = codeLanguage(node);
  const copy = async () => {
    if (await copyText(nodeText(node).replace(/\n$/, ""))) {
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
      <pre>{children}</pre>
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
  img: ({ node: _node, src, alt, ...rest }) => <img {...rest} src={src} alt={alt ?? ""} loading="lazy" />,
  table: ({ node: _node, children, ...rest }) => (
    <div className="table-wrap">
      <table {...rest}>{children}</table>
    </div>
  ),
};

const remarkPlugins = [remarkGfm];

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return (
    <ReactMarkdown remarkPlugins={remarkPlugins} components={components}>
      {text}
    </ReactMarkdown>
  );
});
