// The message box: Enter sends, Shift+Enter inserts a newline; a paperclip attaches files (also by pasting or
// dropping them); while a reply streams the send button becomes a stop button.

import { forwardRef, useEffect, useImperativeHandle, useMemo, useRef, useState } from "react";
import { FileIcon, PaperclipIcon, SendIcon, StopIcon, XIcon } from "./icons";

export interface ComposerHandle {
  focus: () => void;
}

interface ComposerProps {
  value: string;
  onChange: (value: string) => void;
  files: File[];
  onFilesChange: (files: File[]) => void;
  /** a reply is being requested or streamed */
  busy: boolean;
  /** sending is paused (a branch is being switched) */
  disabled?: boolean;
  stopping: boolean;
  onSend: () => void;
  onStop: () => void;
}

/** The largest attachment accepted (the server refuses request bodies over 10 MB by default, and a data URL is
 * a third larger than the file). */
export const MAX_FILE_BYTES = 7 * 1024 * 1024;

function FileChip({ file, onRemove }: { file: File; onRemove: () => void }) {
  const preview = useMemo(() => (file.type.startsWith("image/") ? URL.createObjectURL(file) : null), [file]);
  useEffect(() => () => (preview ? URL.revokeObjectURL(preview) : undefined), [preview]);
  return (
    <div className="file-chip" data-testid="pending-file">
      {preview ? <img src={preview} alt="" /> : <FileIcon />}
      <span className="file-chip-name" title={file.name}>
        {file.name}
      </span>
      <button type="button" className="icon-btn" aria-label={`Remove ${file.name}`} data-testid="remove-file" onClick={onRemove}>
        <XIcon />
      </button>
    </div>
  );
}

export const Composer = forwardRef<ComposerHandle, ComposerProps>(function Composer(
  { value, onChange, files, onFilesChange, busy, disabled = false, stopping, onSend, onStop },
  ref,
) {
  const textarea = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  const [fileNotice, setFileNotice] = useState<string | null>(null);

  useImperativeHandle(ref, () => ({ focus: () => textarea.current?.focus() }), []);

  // Grow with the text, up to a limit (then it scrolls).
  useEffect(() => {
    const el = textarea.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [value]);

  const canSend = !busy && !disabled && (value.trim().length > 0 || files.length > 0);

  const addFiles = (list: FileList | File[] | null) => {
    if (!list) return;
    const accepted: File[] = [];
    const tooBig: string[] = [];
    for (const file of Array.from(list)) {
      if (file.size > MAX_FILE_BYTES) tooBig.push(file.name);
      else accepted.push(file);
    }
    setFileNotice(tooBig.length ? `Too large to attach (max ${MAX_FILE_BYTES / 1024 / 1024} MB): ${tooBig.join(", ")}` : null);
    if (accepted.length) onFilesChange([...files, ...accepted]);
  };

  return (
    <form
      className={`composer${dragging ? " composer-drop" : ""}`}
      onSubmit={(e) => {
        e.preventDefault();
        if (canSend) onSend();
      }}
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes("Files")) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        if (e.dataTransfer.files.length) {
          e.preventDefault();
          addFiles(e.dataTransfer.files);
        }
        setDragging(false);
      }}
    >
      {files.length > 0 ? (
        <div className="file-chips">
          {files.map((file, i) => (
            <FileChip key={`${file.name}-${i}`} file={file} onRemove={() => onFilesChange(files.filter((_, j) => j !== i))} />
          ))}
        </div>
      ) : null}
      {fileNotice ? <div className="file-notice">{fileNotice}</div> : null}
      <div className="composer-row">
        <button
          type="button"
          className="icon-btn composer-attach"
          data-testid="attach"
          aria-label="Attach files"
          title="Attach files"
          onClick={() => fileInput.current?.click()}
        >
          <PaperclipIcon />
        </button>
        <input
          ref={fileInput}
          type="file"
          multiple
          hidden
          data-testid="attach-input"
          onChange={(e) => {
            addFiles(e.target.files);
            e.target.value = "";
          }}
        />
        <textarea
          ref={textarea}
          data-testid="composer"
          aria-label="Message"
          placeholder="Send a message…"
          rows={1}
          value={value}
          // Focus on computers; on phones it would pop up the keyboard over the page.
          autoFocus={window.matchMedia("(hover: hover) and (pointer: fine)").matches}
          onChange={(e) => onChange(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
              e.preventDefault();
              if (canSend) onSend();
            }
          }}
          onPaste={(e) => {
            const pasted = Array.from(e.clipboardData.files);
            if (pasted.length) {
              e.preventDefault();
              addFiles(pasted);
            }
          }}
        />
        {busy ? (
          <button
            type="button"
            className="send-btn stop-btn"
            data-testid="stop"
            aria-label="Stop generating"
            title="Stop"
            disabled={stopping}
            onClick={onStop}
          >
            <StopIcon />
          </button>
        ) : (
          <button type="submit" className="send-btn" data-testid="send" aria-label="Send message" title="Send" disabled={!canSend}>
            <SendIcon />
          </button>
        )}
      </div>
    </form>
  );
});
