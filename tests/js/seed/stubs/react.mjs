// Stand-in for "react" so the seed's unstable_Provider can be called as a plain
// function outside a React render. Only what the seed (and JSX) needs.
export function useMemo(factory, _deps) {
  return factory();
}

export const Fragment = Symbol.for("react.fragment");

// Classic JSX transform target: returns a plain element object keeping props.
export function createElement(type, config, ...children) {
  const { key = null, ...props } = config ?? {};
  if (children.length === 1) props.children = children[0];
  else if (children.length > 1) props.children = children;
  return { $$typeof: "stub.element", type, key, props };
}

export default { useMemo, createElement, Fragment };
