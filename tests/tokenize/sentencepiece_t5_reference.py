# Reference side of the Precompiled / T5 test: trains a small SentencePiece Unigram model with a
# real normalization rule (libsentencepiece via Debian's python3-sentencepiece), so that its
# .model carries a precompiled_charsmap, converts the model to
#   - tokenizer.json, laid out as Hugging Face's converter writes T5 / XLM-R tokenizers:
#     Sequence[Precompiled, Strip(right), Replace(" {2,}" -> U+2581)], Metaspace(always),
#     Unigram(scores, unk_id), "$A </s>" template, Metaspace decoder;
#   - vocab.json: what llama.cpp's convert script puts in a GGUF `t5` vocabulary (pieces, scores,
#     types, the charsmap, the normalizer flags), for the C++ test to write with hearth's GGUF
#     writer;
# and encodes the given strings with SentencePiece itself.
# usage: /usr/bin/python3 sentencepiece_t5_reference.py <train.txt> <strings.json> <rule>
#        <vocab_size> <out-dir>
import base64
import io
import json
import struct
import sys

import sentencepiece as spm


def varint(buf, pos):
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def fields(buf):
    """(field number, wire type, value) of a protobuf message (no protobuf module needed)."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def parse_model(proto):
    # ModelProto: 1 pieces {1 piece, 2 score, 3 type}, 3 normalizer_spec {2 precompiled_charsmap,
    # 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces}.
    pieces, spec = [], {"charsmap": b"", "add_dummy_prefix": True,
                        "remove_extra_whitespaces": True, "escape_whitespaces": True}
    for number, _, value in fields(proto):
        if number == 1:
            piece = {"piece": "", "score": 0.0, "type": 1}
            for n, _, v in fields(value):
                if n == 1:
                    piece["piece"] = v.decode("utf-8")
                elif n == 2:
                    piece["score"] = struct.unpack("<f", v)[0]
                elif n == 3:
                    piece["type"] = v
            pieces.append(piece)
        elif number == 3:
            for n, _, v in fields(value):
                if n == 2:
                    spec["charsmap"] = bytes(v)
                elif n == 3:
                    spec["add_dummy_prefix"] = bool(v)
                elif n == 4:
                    spec["remove_extra_whitespaces"] = bool(v)
                elif n == 5:
                    spec["escape_whitespaces"] = bool(v)
    return pieces, spec


train_path, strings_path, rule, vocab_size, out_dir = sys.argv[1:6]
with open(train_path, encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f if line.strip()]
model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_writer=model, vocab_size=int(vocab_size),
    model_type="unigram", normalization_rule_name=rule, character_coverage=0.98,
    pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)  # T5's ids
proto = model.getvalue()
sp = spm.SentencePieceProcessor(model_proto=proto)
pieces, spec = parse_model(proto)
assert len(pieces) == sp.get_piece_size()
assert spec["charsmap"], "the trained model has no precompiled_charsmap"
charsmap = base64.b64encode(spec["charsmap"]).decode("ascii")

vocab = [[p["piece"], p["score"]] for p in pieces]
added = [{"id": i, "content": p["piece"], "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True}
         for i, p in enumerate(pieces) if p["type"] in (2, 3)]
eos = sp.eos_id()
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": added,
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": charsmap},
        {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                      "split": True},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "special_tokens": {"</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]}}},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                "split": True},
    "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab, "byte_fallback": False},
}
with open(out_dir + "/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
with open(out_dir + "/vocab.json", "w", encoding="utf-8") as f:
    json.dump({"tokens": [p["piece"] for p in pieces], "scores": [p["score"] for p in pieces],
               "types": [p["type"] for p in pieces], "charsmap": charsmap,
               "unk_id": sp.unk_id(), "eos_id": eos,
               "add_dummy_prefix": spec["add_dummy_prefix"],
               "remove_extra_whitespaces": spec["remove_extra_whitespaces"]}, f,
              ensure_ascii=False)
with open(strings_path, encoding="utf-8") as f:
    strings = json.load(f)
with open(out_dir + "/out.json", "w", encoding="utf-8") as f:
    json.dump([sp.encode(s) for s in strings], f)
