// Stand-in for "react/jsx-runtime" (automatic JSX transform target): returns a
// plain element object keeping props, so the harness can read them.
import { Fragment } from "./react.mjs";

export { Fragment };

export function jsx(type, props, key) {
  return { $$typeof: "stub.element", type, key: key ?? null, props: { ...props } };
}

export const jsxs = jsx;
export const jsxDEV = jsx;
