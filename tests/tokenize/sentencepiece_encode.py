# Reference side of the FLUX T5 tokenizer test: encodes strings with libsentencepiece (Debian's
# python3-sentencepiece) from a real .model file and appends </s> as T5's tokenizer does.
# usage: /usr/bin/python3 sentencepiece_encode.py <spiece.model> <strings.json> <out.json>
import json
import sys

import sentencepiece as spm

model_path, strings_path, out_path = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model_path)
with open(strings_path, encoding="utf-8") as f:
    strings = json.load(f)
eos = sp.piece_to_id("</s>")
with open(out_path, "w", encoding="utf-8") as f:
    json.dump([sp.encode(s) + [eos] for s in strings], f)
