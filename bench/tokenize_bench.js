// transformers.js side of bench/tokenize_bench: encodes every document of a JSON array with
// @lenml/tokenizers (transformers.js's tokenizers) on one thread and prints
// "<seconds> <tokens>" for the timed loop (loading excluded).
// usage: node tokenize_bench.js <package-name | path/to/tokenizer.json> <docs.json>
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");

const [, , which, docsPath] = process.argv;
let tokenizer;
if (which.endsWith(".json")) {
  const configPath = path.join(path.dirname(which), "tokenizer_config.json");
  tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(which, "utf8")),
    tokenizerConfig: fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {},
  });
} else {
  tokenizer = require(which).fromPreTrained();
}
const docs = JSON.parse(fs.readFileSync(docsPath, "utf8"));
const start = process.hrtime.bigint();
let tokens = 0;
for (const d of docs) tokens += tokenizer.encode(d).length;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`${seconds} ${tokens}`);
