// An in-page confirmation for a destructive action, on the browser's modal <dialog>: it keeps keyboard focus
// inside while open (the rest of the page is inert), starts on Cancel, closes on Escape or a click outside as a
// Cancel, and gives focus back to the button that opened it. Shown while mounted.

import { type ReactNode, useId, useLayoutEffect, useRef } from "react";

export function ConfirmDialog({
  title,
  children,
  confirmLabel,
  onConfirm,
  onCancel,
}: {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const id = useId();
  const dialog = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  // A layout effect: its clean-up runs before React removes the element, so close() hands focus back.
  useLayoutEffect(() => {
    const element = dialog.current;
    if (!element) return;
    element.showModal();
    cancel.current?.focus();
    return () => element.close();
  }, []);
  return (
    <dialog
      ref={dialog}
      className="confirm-dialog"
      data-testid="confirm-dialog"
      aria-labelledby={`${id}-title`}
      aria-describedby={`${id}-text`}
      onCancel={(e) => {
        // Escape: the parent unmounts the dialog, which closes it.
        e.preventDefault();
        onCancel();
      }}
      onKeyDown={(e) => {
        // Escape is the dialog's, not the page's too (it would close the chat list drawer behind it).
        if (e.key === "Escape") e.stopPropagation();
      }}
      onClick={(e) => {
        // A click on the backdrop lands on the <dialog> itself; clicks inside land on its contents.
        if (e.target === e.currentTarget) onCancel();
      }}
    >
      <div className="confirm-body">
        <h2 id={`${id}-title`}>{title}</h2>
        <p id={`${id}-text`}>{children}</p>
        <div className="confirm-actions">
          <button type="button" className="btn" data-testid="confirm-cancel" ref={cancel} onClick={onCancel}>
            Cancel
          </button>
          <button type="button" className="btn btn-danger" data-testid="confirm-accept" onClick={onConfirm}>
            {confirmLabel}
          </button>
        </div>
      </div>
    </dialog>
  );
}
