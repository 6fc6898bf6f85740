// check.cjs: the published schemas as Node's ajv (draft 2020-12, with
// ajv-formats) sees them.
//
// Run by schemas/interop/run with the job file that schemas/tests/interop.rs
// writes; the same checks as check.py: both documents compile (ajv builds
// each `pattern` as an ECMA-262 RegExp with the "u" flag), each vector gets
// the verdict Rust gave it, and each name pattern accepts "a{c}b" for exactly
// the code points Rust accepts. ajv's strict-mode warnings count as failures.
// Prints one line per disagreement, then "node ajv: ok" or exits 1.
"use strict";

const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats");

const WHO = "node ajv";
const OPENAPI_URI = "urn:vibemon:openapi";
const OPENAPI_TOP_LEVEL = ["openapi", "info", "servers", "paths", "components", "security", "tags", "webhooks", "externalDocs"];

function pointer(doc, ptr) {
  return ptr.split("/").slice(1).reduce((d, p) => d[p.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
}

function newAjv(warnings) {
  const log = (...args) => warnings.push(args.join(" "));
  const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true, logger: { log, warn: log, error: log } });
  addFormats(ajv);
  return ajv;
}

function compile(docs, errors, warnings) {
  const ajv = newAjv(warnings);
  ajv.addVocabulary(OPENAPI_TOP_LEVEL);
  const validators = {};
  const attempt = (name, build) => {
    try {
      return build();
    } catch (e) {
      errors.push(`${WHO}: ${name} does not compile: ${e.message}`);
      return null;
    }
  };
  // One event schema per version: "event" is v1, "event.v2" ...
  for (const name of Object.keys(docs).filter((n) => n.startsWith("event"))) {
    validators[name] = attempt(`${name} schema`, () => ajv.compile(docs[name]));
  }
  attempt("openapi.json", () => ajv.addSchema(docs.openapi, OPENAPI_URI));
  for (const name of Object.keys(docs.openapi.components.schemas)) {
    const ref = `${OPENAPI_URI}#/components/schemas/${name}`;
    const v = attempt(`openapi.json components/schemas/${name}`, () => ajv.getSchema(ref));
    if (name === "WebhookRequest") validators.webhook = v;
  }
  return validators;
}

function vectorErrors(job, validators) {
  const errors = [];
  for (const v of job.vectors) {
    const validate = validators[v.schema];
    const got = validate(v.instance);
    if (got !== v.valid) {
      const why = (validate.errors || []).map((e) => `${e.instancePath} ${e.message}`).join("; ");
      errors.push(
        `${WHO}: ${v.name}: the schema says ${got ? "valid" : "invalid"}, Rust says ${v.valid ? "valid" : "invalid"}` +
          (why ? ` (${why.slice(0, 400)})` : ""),
      );
    }
  }
  return errors;
}

function sweepErrors(job, docs, warnings) {
  const errors = [];
  for (const sweep of job.sweeps) {
    const validate = newAjv(warnings).compile({ type: "string", pattern: pointer(docs[sweep.document], sweep.pointer) });
    const allowed = new Uint8Array(0x110000);
    for (const [lo, hi] of sweep.allowed) allowed.fill(1, lo, hi + 1);
    const wrong = [];
    for (let cp = 0; cp < 0x110000; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      if (validate(`a${String.fromCodePoint(cp)}b`) !== (allowed[cp] === 1)) wrong.push(cp);
    }
    if (wrong.length > 0) {
      const hex = (cp) => `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
      const shown = wrong.slice(0, 8).map((cp) => `${hex(cp)} (${allowed[cp] ? "Rust accepts" : "Rust refuses"})`);
      errors.push(
        `${WHO}: ${sweep.file} ${sweep.pointer}: "a{c}b" disagrees with Rust for ${wrong.length} code points: ${shown.join(", ")}`,
      );
    }
  }
  return errors;
}

function main(jobPath) {
  const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
  const docs = {};
  for (const [name, path] of Object.entries(job.documents)) docs[name] = JSON.parse(fs.readFileSync(path, "utf8"));
  const warnings = [];
  let errors = [];
  const validators = compile(docs, errors, warnings);
  if (errors.length === 0) errors = vectorErrors(job, validators).concat(sweepErrors(job, docs, warnings));
  errors = errors.concat(warnings.map((w) => `${WHO}: strict mode: ${w}`));
  for (const line of errors) console.log(line);
  if (errors.length > 0) return 1;
  console.log(`${WHO}: ok (${job.vectors.length} vectors, ${job.sweeps.length} sweeps)`);
  return 0;
}

process.exitCode = main(process.argv[2]);
