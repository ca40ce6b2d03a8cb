# Reference side of the Unigram test: trains a small SentencePiece Unigram model (libsentencepiece
# via Debian's python3-sentencepiece) on a text file, writes the equivalent tokenizer.json, and
# encodes/decodes the given strings with SentencePiece itself.
# usage: /usr/bin/python3 sentencepiece_reference.py <train.txt> <strings.json> <out-dir>
import io
import json
import sys

import sentencepiece as spm

train_path, strings_path, out_dir = sys.argv[1:4]
with open(train_path, encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f if line.strip()]
model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_writer=model, vocab_size=1000, model_type="unigram",
    normalization_rule_name="identity", remove_extra_whitespaces=False, byte_fallback=True,
    character_coverage=0.9995, minloglevel=2)
sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
added = [{"id": i, "content": sp.id_to_piece(i), "special": True, "normalized": False}
         for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
tokenizer = {
    "version": "1.0",
    "added_tokens": added,
    # SentencePiece's dummy prefix is added even before a leading space, which Metaspace's
    # prepend_scheme does not do: prepend in the normalizer, as HF's Llama tokenizers do.
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                      "split": True},
    "post_processor": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab, "byte_fallback": True},
}
with open(out_dir + "/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
with open(strings_path, encoding="utf-8") as f:
    strings = json.load(f)
results = []
for s in strings:
    ids = sp.encode(s)
    results.append({"ids": ids, "text": sp.decode(ids)})
with open(out_dir + "/out.json", "w", encoding="utf-8") as f:
    json.dump(results, f, ensure_ascii=False)
