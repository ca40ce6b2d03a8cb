// Reference side of the differential test: encodes and decodes strings with @lenml/tokenizers
// (a JavaScript port of Hugging Face tokenizers, from transformers.js).
// usage: node lenml_reference.js <package-name | path/to/tokenizer.json> <strings.json> <out.json>
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");

const [, , which, stringsPath, outPath] = process.argv;
let tokenizer;
if (which.endsWith(".json")) {
  const dir = path.dirname(which);
  const configPath = path.join(dir, "tokenizer_config.json");
  tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(which, "utf8")),
    tokenizerConfig: fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {},
  });
} else {
  tokenizer = require(which).fromPreTrained();
}
const strings = JSON.parse(fs.readFileSync(stringsPath, "utf8"));
const results = strings.map((s) => {
  const ids = tokenizer.encode(s);
  const text =
    ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  return { ids, text };
});
fs.writeFileSync(outPath, JSON.stringify(results));
