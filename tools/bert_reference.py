#!/usr/bin/python3
"""Independent BERT reference for hearth's tests, on Debian's python3-torch (1.13) and numpy.

Reads a Hugging Face BERT folder (config.json, model.safetensors parsed here by hand: 8-byte
little-endian header length, JSON header, raw little-endian tensor bytes; sentence-transformers
modules.json and 1_Pooling/config.json) and computes, in float64, one sequence at a time (no
padding), what the architecture defines:

  embeddings = LayerNorm(word[ids] + position[0..n) + token_type[type_ids])
  per layer:  a = LayerNorm(x + Dense(MultiHeadSelfAttention(x)))
              x = LayerNorm(a + Dense(GELU(Dense(a))))
  sentence embedding = pooling (mean / cls / max over the tokens), then L2 normalisation when
                       modules.json lists a Normalize module
  classifier logits  = Linear(tanh(Linear(x[0])))   (BertForSequenceClassification)

Usage: bert_reference.py --model DIR --input ids.json --output out.json
ids.json: {"sequences": [{"ids": [...], "type_ids": [...]}, ...]}
out.json: {"embeddings": [[...], ...]} and, with a classification head, {"logits": [[...], ...]}
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin : base + end]
        dtype = info["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: unsupported dtype {dtype} for {name}")
        shape = info["shape"]
        tensors[name] = torch.from_numpy(arr.astype(np.float64).reshape(shape))
    return tensors


class Bert:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        raw = read_safetensors(os.path.join(folder, "model.safetensors"))
        # BertForSequenceClassification keeps the encoder under "bert."; the head is top level.
        self.w = {}
        for name, t in raw.items():
            self.w[name[5:] if name.startswith("bert.") else name] = t
        self.heads = self.cfg["num_attention_heads"]
        self.layers = self.cfg["num_hidden_layers"]
        self.eps = self.cfg.get("layer_norm_eps", 1e-12)
        act = self.cfg.get("hidden_act", "gelu")
        self.gelu_approx = "tanh" if act in ("gelu_new", "gelu_pytorch_tanh") else "none"
        self.pooling = "mean"
        self.normalize = False
        modules_path = os.path.join(folder, "modules.json")
        if os.path.exists(modules_path):
            with open(modules_path) as f:
                modules = json.load(f)
            for m in modules:
                if m["type"].endswith(".Normalize"):
                    self.normalize = True
                if m["type"].endswith(".Pooling"):
                    with open(os.path.join(folder, m["path"], "config.json")) as f:
                        pc = json.load(f)
                    if pc.get("pooling_mode_cls_token"):
                        self.pooling = "cls"
                    elif pc.get("pooling_mode_max_tokens"):
                        self.pooling = "max"
                    elif pc.get("pooling_mode_mean_tokens"):
                        self.pooling = "mean"
                    else:
                        raise SystemExit("unsupported pooling config")
        self.has_classifier = "classifier.weight" in self.w

    def dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def norm(self, x, name):
        h = x.shape[-1]
        return torch.nn.functional.layer_norm(
            x, (h,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps
        )

    def encode(self, ids, type_ids):
        n = len(ids)
        ids_t = torch.tensor(ids, dtype=torch.long)
        types_t = torch.tensor(type_ids if type_ids else [0] * n, dtype=torch.long)
        x = (
            self.w["embeddings.word_embeddings.weight"][ids_t]
            + self.w["embeddings.position_embeddings.weight"][:n]
            + self.w["embeddings.token_type_embeddings.weight"][types_t]
        )
        x = self.norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        d = hidden // self.heads
        for l in range(self.layers):
            p = f"encoder.layer.{l}."
            q = self.dense(x, p + "attention.self.query").view(n, self.heads, d).transpose(0, 1)
            k = self.dense(x, p + "attention.self.key").view(n, self.heads, d).transpose(0, 1)
            v = self.dense(x, p + "attention.self.value").view(n, self.heads, d).transpose(0, 1)
            scores = q @ k.transpose(1, 2) / math.sqrt(d)
            ctx = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(n, hidden)
            x = self.norm(self.dense(ctx, p + "attention.output.dense") + x,
                          p + "attention.output.LayerNorm")
            inter = torch.nn.functional.gelu(self.dense(x, p + "intermediate.dense"),
                                             approximate=self.gelu_approx)
            x = self.norm(self.dense(inter, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embedding(self, x):
        if self.pooling == "cls":
            e = x[0]
        elif self.pooling == "max":
            e = x.max(dim=0).values
        else:
            e = x.mean(dim=0)
        if self.normalize:
            e = e / torch.clamp(torch.linalg.norm(e), min=1e-12)
        return e

    def logits(self, x):
        pooled = torch.tanh(self.dense(x[0], "pooler.dense"))
        return self.dense(pooled, "classifier")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = Bert(args.model)
    with open(args.input) as f:
        sequences = json.load(f)["sequences"]
    out = {"embeddings": [], "pooling": model.pooling, "normalize": model.normalize}
    if model.has_classifier:
        out["logits"] = []
    with torch.no_grad():
        for seq in sequences:
            x = model.encode(seq["ids"], seq.get("type_ids", []))
            out["embeddings"].append(model.embedding(x).tolist())
            if model.has_classifier:
                out["logits"].append(model.logits(x).tolist())
    with open(args.output, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
