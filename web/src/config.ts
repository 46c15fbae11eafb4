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

/** A prompt an empty chat offers: `label` says what it shows, `prompt` is sent as is. */
export interface Suggestion {
  label: string;
  prompt: string;
}

function parseSuggestions(json: string | null): Suggestion[] {
  if (!json) return [];
  try {
    const parsed: unknown = JSON.parse(json);
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (item): item is Suggestion =>
        typeof item === "object" && item !== null && typeof item.label === "string" && typeof item.prompt === "string",
    );
  } catch {
    return [];
  }
}

/** The model's suggestions (the demo model's are prompts it reacts to; other models offer none unless their code
 * does), from `<meta name="chatkeep-suggestions">`, a JSON list. */
export const suggestions: Suggestion[] = parseSuggestions(meta("chatkeep-suggestions"));
