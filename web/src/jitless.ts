// The AI SDK validates stream chunks with zod, which checks once whether it may compile validators with
// `Function(...)`. The page's Content-Security-Policy forbids that (no 'unsafe-eval'), so the check would only
// show up as a policy violation: tell zod up front to validate without compiling. zod reads this global config
// (zod/v4/core: `globalThis.__zod_globalConfig`); imported first by main.tsx, before the SDK.

const zodGlobal = globalThis as { __zod_globalConfig?: { jitless?: boolean } };
// The same object, not a new one: zod keeps a reference to it from when its module ran.
(zodGlobal.__zod_globalConfig ??= {}).jitless = true;

export {};
