// A failed reply as the real AI SDK clients read it: every chunk of the stream passes each version's schema, and
// the message readUIMessageStream builds (useChat's copy of the reply) equals the one chatkeep stored.
//
// Usage: node failed-reply-clients.mjs <cases.json>, where the file holds {name: {chunks, stored}}.
// Prints one line per check, then "N passed, M failed"; exits 1 on any failure.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
let passed = 0;
let failed = 0;
for (const pkg of ["ai5-strict", "ai6-strict", "ai7-strict", "ai5", "ai6", "ai7"]) {
  const ai = await import(pkg);
  for (const [name, { chunks, stored }] of Object.entries(cases)) {
    try {
      const schema = ai.uiMessageChunkSchema;
      for (const chunk of chunks) {
        const validator = typeof schema === "function" ? schema() : schema;
        const result = await (validator.validate
          ? validator.validate(chunk)
          : { success: validator.safeParse(chunk).success });
        assert.ok(result.success !== false, `chunk rejected by the schema: ${JSON.stringify(chunk)}`);
      }
      let message;
      try {
        for await (message of ai.readUIMessageStream({ stream: ReadableStream.from(chunks), terminateOnError: true }));
      } catch (error) {
        // the error chunk ends the reading, as in useChat; what was built until then is the client's copy
        assert.equal(error.message, chunks.at(-1).errorText);
      }
      assert.deepEqual(JSON.parse(JSON.stringify(message)), stored);
      passed++;
      console.log(`ok   ${pkg} ${name}`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${pkg} ${name}: ${String(error?.message ?? error)}`);
    }
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
