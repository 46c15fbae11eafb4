#!/usr/bin/env node
// Checks the UIMessage fixture corpus against the real Vercel AI SDK packages.
//
//   node tests/js/validate-fixtures.mjs [--verbose]
//
// * tests/fixtures/ui_messages.json: every case must pass `safeValidateUIMessages` of each
//   major listed in `case.sdk` (ai5 = 5.0.277, ai6 = 6.0.322, ai7 = 7.0.173).
//   `sdk` must also equal the set of majors whose *TypeScript* UIMessage type declares every
//   part/state/field the case uses (the tables below, transcribed from each `dist/index.d.ts`). The
//   runtime check alone is not enough, because `validateUIMessages` strips unknown keys and
//   ai 5.0.277 even accepts the v6 approval states.
//   Under ai7, a case without `unknownKeys` must come back unchanged (this catches misspelt
//   field names, which the SDK would silently strip), and a case with `unknownKeys: true` must not.
// * tests/fixtures/invalid_ui_messages.json: ai6 must reject a case exactly when it has
//   `sdkRejects: true`.
//
// Prints one line per failure and ends with `N passed, M failed` (exit 1 if M > 0). A check is one
// (valid case, listed major) validation, the structure/`sdk` check of each valid case, or one invalid case.
// --verbose also prints informational notes (keys each SDK strips, majors outside `sdk` that
// still accept a case, where ai5/ai7 stand on the invalid cases).

import { readFileSync } from 'node:fs';

const VERBOSE = process.argv.includes('--verbose');
const fixturesDir = new URL('../fixtures/', import.meta.url);
const readJson = name => JSON.parse(readFileSync(new URL(name, fixturesDir), 'utf8'));

// ai 7 logs a deprecation warning for `rawInput` on output-error parts; keep the output clean.
globalThis.AI_SDK_LOG_WARNINGS = false;

const SDK = {
  5: await import('ai5'),
  6: await import('ai6'),
  7: await import('ai7'),
};
const MAJORS = ['5', '6', '7'];
const FORMATS = ['ai-sdk/v5', 'ai-sdk/v6'];

// ------------------------------------------------------------------------------------------------
// Fields declared by each major's UIMessage TypeScript types.

const MESSAGE_KEYS = ['id', 'role', 'metadata', 'parts'];
const PM = 'providerMetadata';
const TEXT = ['type', 'text', 'state', PM];
const FILE = ['type', 'mediaType', 'filename', 'url', PM];
const SIMPLE_PARTS = {
  text: { 5: TEXT, 6: TEXT, 7: [...TEXT, 'citations'] },
  reasoning: { 5: ['type', 'id', 'text', 'state', PM], 6: ['type', 'id', 'text', 'state', PM], 7: ['type', 'id', 'text', 'state', PM] },
  'source-url': { 5: ['type', 'sourceId', 'url', 'title', PM], 6: ['type', 'sourceId', 'url', 'title', PM], 7: ['type', 'sourceId', 'url', 'title', PM] },
  'source-document': {
    5: ['type', 'sourceId', 'mediaType', 'title', 'filename', PM],
    6: ['type', 'sourceId', 'mediaType', 'title', 'filename', PM],
    7: ['type', 'sourceId', 'mediaType', 'title', 'filename', PM],
  },
  file: { 5: FILE, 6: FILE, 7: [...FILE, 'providerReference'] },
  'step-start': { 5: ['type'], 6: ['type'], 7: ['type'] },
  custom: { 7: ['type', 'kind', PM] },
  'reasoning-file': { 7: ['type', 'mediaType', 'url', PM] },
  'steering-message': { 7: ['type', 'id', 'parts'] },
};
const DATA_PART = ['type', 'id', 'data'];

const V5_TOOL_STATES = {
  'input-streaming': ['input', 'rawInput'],
  'input-available': ['input', 'callProviderMetadata'],
  'output-available': ['input', 'output', 'callProviderMetadata', 'preliminary'],
  'output-error': ['input', 'rawInput', 'errorText', 'callProviderMetadata'],
};
const V6_TOOL_STATES = {
  'input-streaming': ['input', 'rawInput', 'inputEncoding', 'callProviderMetadata'],
  'input-available': ['input', 'callProviderMetadata'],
  'approval-requested': ['input', 'callProviderMetadata', 'approval'],
  'approval-responded': ['input', 'callProviderMetadata', 'approval'],
  'output-available': ['input', 'output', 'callProviderMetadata', 'resultProviderMetadata', 'preliminary', 'approval'],
  'output-error': ['input', 'rawInput', 'errorText', 'callProviderMetadata', 'resultProviderMetadata', 'approval'],
  'output-denied': ['input', 'callProviderMetadata', 'approval'],
};
// Static `tool-*` parts.
const STATIC_TOOL = {
  5: { common: ['type', 'toolCallId', 'providerExecuted', 'state'], states: V5_TOOL_STATES },
  6: { common: ['type', 'toolCallId', 'title', 'toolMetadata', 'providerExecuted', 'state'], states: V6_TOOL_STATES },
  7: { common: ['type', 'toolCallId', 'title', 'toolMetadata', 'providerExecuted', 'state'], states: V6_TOOL_STATES },
};
// `dynamic-tool` parts. The d.ts of 5/6/7 omit `rawInput` on a dynamic `output-error`, but the
// validateUIMessages schema of all three declares it, and validateUIMessages itself produces it
// when it converts a static output-error part of an unregistered tool to `dynamic-tool` (dynamic:false),
// so it is accepted here (the static tables already list it).
const DYNAMIC_COMMON_V5 = ['type', 'dynamic', 'toolName', 'toolCallId', 'title', 'providerExecuted', 'state'];
const DYNAMIC_TOOL = {
  5: { common: DYNAMIC_COMMON_V5, states: V5_TOOL_STATES },
  6: { common: [...DYNAMIC_COMMON_V5, 'toolMetadata'], states: V6_TOOL_STATES },
  7: { common: [...DYNAMIC_COMMON_V5, 'toolMetadata'], states: V6_TOOL_STATES },
};
const APPROVAL = {
  6: ['id', 'approved', 'descriptor', 'reason', 'signature', 'inputSchemaInput'],
  7: ['id', 'approved', 'descriptor', 'reason', 'signature', 'inputSchemaInput', 'requestReason', 'isAutomatic'],
};

const isObject = v => v != null && typeof v === 'object' && !Array.isArray(v);

/** Paths (arrays) in `message` that the given major's UIMessage type does not declare. */
function undeclaredPaths(message, major) {
  const out = [];
  const extraKeys = (obj, allowed, path) => {
    for (const key of Object.keys(obj)) if (!allowed.includes(key)) out.push([...path, key]);
  };
  extraKeys(message, MESSAGE_KEYS, []);
  const checkPart = (part, path, allowedTypes) => {
    if (!isObject(part) || typeof part.type !== 'string') return out.push(path);
    const { type } = part;
    if (allowedTypes && !allowedTypes.includes(type)) return out.push(path);
    if (type.startsWith('data-')) return extraKeys(part, DATA_PART, path);
    const toolTable = type.startsWith('tool-') ? STATIC_TOOL : type === 'dynamic-tool' ? DYNAMIC_TOOL : undefined;
    if (toolTable) {
      const fields = toolTable[major].states[part.state];
      if (!fields) return out.push(path); // the state (hence the part shape) is unknown to this major
      extraKeys(part, [...toolTable[major].common, ...fields], path);
      if (isObject(part.approval) && APPROVAL[major]) extraKeys(part.approval, APPROVAL[major], [...path, 'approval']);
      return;
    }
    const allowed = SIMPLE_PARTS[type]?.[major];
    if (!allowed) return out.push(path);
    extraKeys(part, allowed, path);
    // ai 7 allows a top-level-only media type ("image") on file parts.
    if (type === 'file' && major !== '7' && typeof part.mediaType === 'string' && !part.mediaType.includes('/')) {
      out.push([...path, 'mediaType']);
    }
    if (type === 'steering-message' && Array.isArray(part.parts)) {
      part.parts.forEach((p, i) => checkPart(p, [...path, 'parts', i], ['text', 'file']));
    }
  };
  if (Array.isArray(message.parts)) message.parts.forEach((p, i) => checkPart(p, ['parts', i]));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Helpers.

/** Deep equality of JSON-like values; object keys whose value is `undefined` count as absent. */
function jsonEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = obj => Object.keys(obj).filter(k => obj[k] !== undefined);
  const ka = keys(a);
  const kb = keys(b);
  return ka.length === kb.length && ka.every(k => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

/** Paths of keys present in `before` and missing in `after` (what the SDK stripped). */
function strippedPaths(before, after, path = []) {
  const out = [];
  if (Array.isArray(before) && Array.isArray(after)) {
    before.forEach((v, i) => out.push(...strippedPaths(v, after[i], [...path, i])));
  } else if (isObject(before) && isObject(after)) {
    for (const [k, v] of Object.entries(before)) {
      if (!(k in after) || after[k] === undefined) out.push([...path, k]);
      else out.push(...strippedPaths(v, after[k], [...path, k]));
    }
  }
  return out;
}

const fmtPath = p => p.map(s => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('') || '(message)';

/** One-line summary of an SDK validation error. */
function describeError(error) {
  const issues = Array.isArray(error?.cause?.issues) ? error.cause.issues : undefined;
  let text;
  if (issues) {
    text = issues
      .map(issue => {
        let msg = issue.message;
        if (issue.code === 'invalid_union' && Array.isArray(issue.errors)) msg = `no union member matches (${issue.errors.length} tried)`;
        return `${fmtPath(issue.path ?? [])}: ${msg}`;
      })
      .join('; ');
  } else {
    text = `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`;
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

/** First issue path reported by ai 7 (it validates element by element and stops at the first problem). */
function firstIssuePath(error) {
  const issue = error?.cause?.issues?.[0];
  return issue?.path ? issue.path.slice(1) : undefined; // drop the index into the messages array
}

async function validate(major, message) {
  // structuredClone: the SDK may mutate/normalize the value it is given.
  return SDK[major].safeValidateUIMessages({ messages: [structuredClone(message)] });
}

let passed = 0;
let failed = 0;
const fail = (label, text) => {
  failed++;
  console.log(`FAIL ${label}: ${text}`);
};
const note = text => {
  if (VERBOSE) console.log(`  note ${text}`);
};

// ------------------------------------------------------------------------------------------------
// Valid cases.

const valid = readJson('ui_messages.json');
const invalid = readJson('invalid_ui_messages.json');
const SNAKE = /^[a-z0-9]+(_[a-z0-9]+)*$/;

function checkCommonShape(kind, cases) {
  const seen = new Set();
  if (!Array.isArray(cases) || cases.length === 0) {
    fail(`${kind}`, 'file must hold a non-empty JSON array');
    return [];
  }
  return cases.filter((c, i) => {
    const label = `${kind}/${c?.name ?? `#${i}`}`;
    if (!isObject(c) || typeof c.name !== 'string' || !SNAKE.test(c.name)) return fail(label, 'name must be a snake_case string'), false;
    if (seen.has(c.name)) return fail(label, 'duplicate name'), false;
    seen.add(c.name);
    if (!isObject(c.message)) return fail(label, 'message must be an object'), false;
    return true;
  });
}

const messageIds = new Set();
for (const c of checkCommonShape('valid', valid)) {
  const label = `valid/${c.name}`;
  const shapeProblems = [];
  if (!Array.isArray(c.sdk) || c.sdk.length === 0 || c.sdk.some(m => !MAJORS.includes(m)) || new Set(c.sdk).size !== c.sdk.length) {
    shapeProblems.push(`sdk must be a non-empty subset of ${JSON.stringify(MAJORS)}`);
  }
  if (!FORMATS.includes(c.format)) shapeProblems.push(`format must be one of ${FORMATS.join(', ')}`);
  if (c.format === 'ai-sdk/v5' && !c.sdk?.includes('5')) shapeProblems.push('format ai-sdk/v5 requires "5" in sdk');
  if ('unknownKeys' in c && c.unknownKeys !== true) shapeProblems.push('unknownKeys must be true when present');
  const extra = Object.keys(c).filter(k => !['name', 'sdk', 'format', 'message', 'unknownKeys'].includes(k));
  if (extra.length) shapeProblems.push(`unexpected case keys ${extra.join(', ')}`);
  if (typeof c.message.id !== 'string') shapeProblems.push('message.id must be a string');
  else if (messageIds.has(c.message.id)) shapeProblems.push(`duplicate message id ${c.message.id}`);
  else messageIds.add(c.message.id);

  // `sdk` must match the majors whose types declare everything the case uses.
  // A path is unknown to every SDK when each major reports it or one of its ancestors.
  const undeclared = Object.fromEntries(MAJORS.map(m => [m, undeclaredPaths(c.message, m)]));
  const covers = (m, p) => undeclared[m].some(q => q.length <= p.length && q.every((k, i) => k === p[i]));
  const unknownEverywhere = [
    ...new Set(MAJORS.flatMap(m => undeclared[m]).filter(p => MAJORS.every(m => covers(m, p))).map(p => JSON.stringify(p))),
  ];
  const expectedSdk = MAJORS.filter(m => undeclared[m].every(p => unknownEverywhere.includes(JSON.stringify(p))));
  if (JSON.stringify(expectedSdk) !== JSON.stringify([...(c.sdk ?? [])].sort())) {
    const why = MAJORS.filter(m => !expectedSdk.includes(m))
      .map(m => `${m} lacks ${undeclared[m].filter(p => !unknownEverywhere.includes(JSON.stringify(p))).map(fmtPath).join(', ')}`)
      .join('; ');
    shapeProblems.push(`sdk should be ${JSON.stringify(expectedSdk)} per the UIMessage types${why ? ` (${why})` : ''}`);
  }
  if ((unknownEverywhere.length > 0) !== (c.unknownKeys === true)) {
    shapeProblems.push(
      unknownEverywhere.length
        ? `keys unknown to every SDK (${unknownEverywhere.map(p => fmtPath(JSON.parse(p))).join(', ')}) need "unknownKeys": true`
        : '"unknownKeys": true but every key is declared by some SDK',
    );
  }
  if (shapeProblems.length) fail(label, shapeProblems.join('; '));
  else passed++;

  for (const major of MAJORS) {
    const result = await validate(major, c.message);
    const listed = c.sdk?.includes(major);
    if (!listed) {
      note(`${label} ai${major} (not listed): ${result.success ? 'accepts' : 'rejects'}`);
      continue;
    }
    if (!result.success) {
      fail(`${label} ai${major}`, describeError(result.error));
      continue;
    }
    const out = result.data[0];
    const stripped = strippedPaths(c.message, out).map(fmtPath);
    if (stripped.length) note(`${label} ai${major} strips ${stripped.join(', ')}`);
    if (major === '7') {
      const same = jsonEqual(c.message, out);
      if (!c.unknownKeys && !same) {
        fail(`${label} ai7`, `validated message differs from the fixture (stripped: ${stripped.join(', ') || 'none'}); misspelt field?`);
        continue;
      }
      if (c.unknownKeys && same) {
        fail(`${label} ai7`, 'marked unknownKeys but ai7 kept every key');
        continue;
      }
    }
    passed++;
  }
}

// ------------------------------------------------------------------------------------------------
// Invalid cases.

function locParentExists(message, loc) {
  let node = message;
  for (const key of loc.slice(0, -1)) {
    if (node == null || typeof node !== 'object' || !(key in node)) return false;
    node = node[key];
  }
  return node != null && typeof node === 'object';
}

for (const c of checkCommonShape('invalid', invalid)) {
  const label = `invalid/${c.name}`;
  const shapeProblems = [];
  if (!Array.isArray(c.loc) || c.loc.length === 0 || c.loc.some(k => typeof k !== 'string' && !Number.isInteger(k))) {
    shapeProblems.push('loc must be a non-empty array of strings and integers');
  } else if (!locParentExists(c.message, c.loc)) {
    shapeProblems.push(`loc ${JSON.stringify(c.loc)} does not point into the message`);
  }
  if (typeof c.why !== 'string' || !c.why) shapeProblems.push('why must be a non-empty string');
  if ('sdkRejects' in c && c.sdkRejects !== true) shapeProblems.push('sdkRejects must be true when present');
  const extra = Object.keys(c).filter(k => !['name', 'message', 'loc', 'why', 'sdkRejects'].includes(k));
  if (extra.length) shapeProblems.push(`unexpected case keys ${extra.join(', ')}`);
  if (shapeProblems.length) {
    fail(label, shapeProblems.join('; '));
    continue;
  }

  const result = await validate('6', c.message);
  if (c.sdkRejects && result.success) fail(`${label} ai6`, 'marked sdkRejects but ai6 accepts it');
  else if (!c.sdkRejects && !result.success) fail(`${label} ai6`, `ai6 rejects it, add "sdkRejects": true (${describeError(result.error)})`);
  else passed++;

  if (VERBOSE) {
    for (const major of ['5', '7']) {
      const r = await validate(major, c.message);
      const where = !r.success && major === '7' ? ` at ${JSON.stringify(firstIssuePath(r.error))}` : '';
      note(`${label} ai${major}: ${r.success ? 'accepts' : `rejects${where}`}`);
    }
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
