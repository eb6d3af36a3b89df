// Checks the manifest JSON Schema in an ECMA-262 engine: every `pattern` compiles as
// `new RegExp(p, "u")` (what JSON Schema's ECMA-262 regular expressions and editors use), and
// ajv's draft 2020-12 build compiles the schema and finds each document valid exactly when it
// says so.
//
// Usage: NODE_PATH=<dir>/node_modules node check_schema.js SCHEMA DOCUMENTS
// SCHEMA is schema/manifest.schema.json; DOCUMENTS is a JSON list of {name, document, valid}
// written by tests/it/schema_tools.rs. Prints one summary line and exits 0, or prints every
// disagreement and exits 1.
"use strict";

const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020");

const schema = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const documents = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));

function* patterns(node) {
  if (Array.isArray(node)) {
    for (const item of node) yield* patterns(item);
  } else if (node !== null && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "pattern" && typeof value === "string") yield value;
      else yield* patterns(value);
    }
  }
}

const found = [...patterns(schema)];
for (const p of found) new RegExp(p, "u");

// Strict, so an unknown keyword or format fails, except strictTypes: `twinValue` applies object
// and array keywords to a value of any type on purpose (they apply only when it is one).
const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: true, unicodeRegExp: true });
const validate = ajv.compile(schema);
const wrong = [];
for (const d of documents) {
  const valid = validate(d.document);
  if (valid !== d.valid) {
    wrong.push(`${d.name}: expected valid=${d.valid}, got ${valid ? "valid" : JSON.stringify(validate.errors)}`);
  }
}
if (wrong.length > 0) {
  console.log(wrong.join("\n"));
  process.exit(1);
}
console.log(`node ajv: ${found.length} patterns compiled, ${documents.length} documents as expected`);
