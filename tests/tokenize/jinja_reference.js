// Reference side of the chat-template differential test: renders cases with @huggingface/jinja
// (the Jinja implementation of transformers.js).
// usage: node jinja_reference.js <cases.json> <out.json>
// cases.json: [{"template": "...", "vars": {...}}]; out.json: [{"ok": true, "text": "..."} or
// {"ok": false, "error": "..."}]
"use strict";
const fs = require("fs");
const { Template } = require("@huggingface/jinja");

const [, , casesPath, outPath] = process.argv;
const cases = JSON.parse(fs.readFileSync(casesPath, "utf8"));
const compiled = new Map();
const results = cases.map(({ template, vars }) => {
  try {
    let t = compiled.get(template);
    if (t === undefined) {
      t = new Template(template);
      compiled.set(template, t);
    }
    return { ok: true, text: t.render(vars) };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  }
});
fs.writeFileSync(outPath, JSON.stringify(results));
