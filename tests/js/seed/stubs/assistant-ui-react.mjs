// Stand-in for "@assistant-ui/react": only the values the seed imports at
// runtime (`useAui`, `RuntimeAdapterProvider`); its other imports are
// type-only and erased by esbuild.
//
// `useAui()` returns an object whose `threadListItem()` is the thread item the
// harness is currently driving, set with `__driveThread(item)`, where item is
// `{ getState(): { remoteId }, initialize(): Promise<{ remoteId }> }`.

let current = null;

export function __driveThread(item) {
  current = item;
}

export function useAui() {
  return {
    threadListItem() {
      if (!current) throw new Error("stub @assistant-ui/react: no thread is being driven (call __driveThread first)");
      return current;
    },
  };
}

// A plain function component; the real one puts `adapters` in React context.
export function RuntimeAdapterProvider({ children }) {
  return children ?? null;
}
