// Syntax highlighting, in a chunk of its own that the page loads when the first code block naming a language
// shows (Markdown.tsx). lowlight runs highlight.js's grammars (its "common" set of 37 languages, with their
// aliases: py, js, ts, sh, html, …) and gives a syntax tree of tokens, which becomes React elements: no HTML string
// is made or parsed, so code from a model or a user is only ever text, whatever it contains.

import { toJsxRuntime } from "hast-util-to-jsx-runtime";
import { common, createLowlight } from "lowlight";
import type { ReactNode } from "react";
import { Fragment, jsx, jsxs } from "react/jsx-runtime";

const lowlight = createLowlight(common);

/** `code` as highlighted tokens (`<span class="hljs-keyword">`…), or null when `language` is not one we know. */
export function highlight(code: string, language: string): ReactNode | null {
  const name = language.toLowerCase();
  if (!lowlight.registered(name)) return null;
  return toJsxRuntime(lowlight.highlight(name, code), { Fragment, jsx, jsxs, passKeys: true });
}
