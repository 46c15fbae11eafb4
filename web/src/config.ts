// What the server tells the page, in <meta> tags it adds to index.html (none under `npm run dev`: the defaults).

/** CHATKEEP_WEB_REMOTE_IMAGES: images from other sites load on a click (`click`), by themselves (`always`), or
 * not at all (`never`; the server's Content-Security-Policy then blocks them too). */
export type RemoteImages = "click" | "always" | "never";

function meta(name: string): string | null {
  return document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? null;
}

const remoteImagesSetting = meta("chatkeep-remote-images");

export const remoteImages: RemoteImages =
  remoteImagesSetting === "always" || remoteImagesSetting === "never" ? remoteImagesSetting : "click";
