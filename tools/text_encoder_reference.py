#!/usr/bin/python3
"""Independent reference for hearth's FLUX text encoders, on Debian's python3-torch and numpy.

Written from the architecture descriptions (CLIP, Radford et al. 2021, as Hugging Face's
CLIPTextModel lays it out; T5 v1.1, Raffel et al. 2020 with the gated-GELU feed-forward, as
T5EncoderModel lays it out), not from hearth's C++ and without transformers. Reads a Hugging Face
folder (config.json, model.safetensors parsed here by hand: 8-byte little-endian header length,
JSON header, raw little-endian tensor bytes) and computes in float64, one sequence at a time:

CLIP text (model_type clip_text_model):
  x = token_embedding[ids] + position_embedding[0..n)
  per layer: x = x + out_proj(causal_attention(LN1(x)))   scores q.k / sqrt(head_dim), j > i masked
             x = x + fc2(quick_gelu(fc1(LN2(x))))          quick_gelu(z) = z * sigmoid(1.702 z)
  hidden = final_layer_norm(x); pooled = hidden[argmax(ids)] when eos_token_id == 2, else
  hidden[first i with ids[i] == eos_token_id]

T5 encoder (model_type t5, feed_forward_proj gated-gelu):
  rms(x) = w * x / sqrt(mean(x^2) + eps)            (no mean subtraction, no bias)
  x = shared[ids]                                    (no scaling)
  bias[h, i, j] = relative_attention_bias[bucket(j - i), h]  (block 0's table, every block)
  per block: x = x + o(softmax(q.k + bias) v) of rms(x)      (no 1/sqrt(d) scaling)
             x = x + wo(gelu_tanh(wi_0(rms(x))) * wi_1(rms(x)))
  hidden = rms_final(x)
  bucket(r): bidirectional, half = num_buckets / 2, offset half when r > 0, n = |r|;
             n < half / 2: n; else min(half - 1, half / 2 + int(log(n / (half / 2)) /
             log(max_distance / (half / 2)) * (half - half / 2)))   (the log part in float32)

Usage: text_encoder_reference.py --model DIR --input ids.json --output out.json
ids.json: {"sequences": [[ids...], ...]}
out.json: {"hidden": [[...flattened [n, width]...], ...]} and for CLIP "pooled": [[...], ...]
"""

import argparse
import json
import math
import os

import numpy as np
import torch

from bert_reference import read_safetensors  # the same float64 reader


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def attention(q, k, v, heads, scale, bias=None, causal=False):
    n, width = q.shape
    d = width // heads
    q = q.reshape(n, heads, d).transpose(0, 1)
    k = k.reshape(n, heads, d).transpose(0, 1)
    v = v.reshape(n, heads, d).transpose(0, 1)
    s = q @ k.transpose(1, 2) * scale
    if bias is not None:
        s = s + bias
    if causal:
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(0, 1).reshape(n, width)


def clip_text(cfg, t, ids):
    p = "text_model."
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-5)
    act = cfg.get("hidden_act", "quick_gelu")
    ids_t = torch.tensor(ids)
    x = t[p + "embeddings.token_embedding.weight"][ids_t] + \
        t[p + "embeddings.position_embedding.weight"][: len(ids)]

    def lin(name, z):
        return z @ t[name + ".weight"].T + t[name + ".bias"]

    for layer in range(cfg["num_hidden_layers"]):
        b = f"{p}encoder.layers.{layer}."
        y = layer_norm(x, t[b + "layer_norm1.weight"], t[b + "layer_norm1.bias"], eps)
        a = attention(lin(b + "self_attn.q_proj", y), lin(b + "self_attn.k_proj", y),
                      lin(b + "self_attn.v_proj", y), heads, 1.0 / math.sqrt(h // heads), causal=True)
        x = x + lin(b + "self_attn.out_proj", a)
        y = layer_norm(x, t[b + "layer_norm2.weight"], t[b + "layer_norm2.bias"], eps)
        f = lin(b + "mlp.fc1", y)
        f = f * torch.sigmoid(1.702 * f) if act == "quick_gelu" else \
            0.5 * f * (1.0 + torch.erf(f / math.sqrt(2.0)))
        x = x + lin(b + "mlp.fc2", f)
    hidden = layer_norm(x, t[p + "final_layer_norm.weight"], t[p + "final_layer_norm.bias"], eps)
    eos = cfg.get("eos_token_id", 2)
    pos = int(torch.argmax(ids_t)) if eos == 2 else next((i for i, v in enumerate(ids) if v == eos), 0)
    return hidden, hidden[pos]


def t5_bucket(r, num_buckets, max_distance):
    half = num_buckets // 2
    bucket = half if r > 0 else 0
    n = abs(r)
    exact = half // 2
    if n < exact:
        return bucket + n
    scaled = np.float32(np.log(np.float32(n) / np.float32(exact))) / np.float32(
        math.log(max_distance / exact)) * np.float32(half - exact)
    return bucket + min(exact + int(scaled), half - 1)


def t5_encoder(cfg, t, ids):
    eps = cfg.get("layer_norm_epsilon", 1e-6)
    heads = cfg["num_heads"]
    buckets = cfg.get("relative_attention_num_buckets", 32)
    max_distance = cfg.get("relative_attention_max_distance", 128)
    if cfg.get("feed_forward_proj") != "gated-gelu":
        raise SystemExit("only T5 v1.1 (gated-gelu) is described here")

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    n = len(ids)
    table = t["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    idx = torch.tensor([[t5_bucket(j - i, buckets, max_distance) for j in range(n)]
                        for i in range(n)])
    bias = table[idx].permute(2, 0, 1)  # [heads, n, n]
    x = t["shared.weight"][torch.tensor(ids)]
    for layer in range(cfg["num_layers"]):
        b = f"encoder.block.{layer}.layer."
        y = rms(x, t[b + "0.layer_norm.weight"])
        w = lambda name: t[b + name + ".weight"]
        a = attention(y @ w("0.SelfAttention.q").T, y @ w("0.SelfAttention.k").T,
                      y @ w("0.SelfAttention.v").T, heads, 1.0, bias=bias)
        x = x + a @ w("0.SelfAttention.o").T
        y = rms(x, t[b + "1.layer_norm.weight"])
        g = y @ w("1.DenseReluDense.wi_0").T
        g = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g ** 3)))
        x = x + (g * (y @ w("1.DenseReluDense.wi_1").T)) @ w("1.DenseReluDense.wo").T
    return rms(x, t["encoder.final_layer_norm.weight"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    t = read_safetensors(os.path.join(args.model, "model.safetensors"))
    with open(args.input) as f:
        seqs = json.load(f)["sequences"]
    out = {"hidden": []}
    with torch.no_grad():
        for ids in seqs:
            if cfg["model_type"] == "clip_text_model":
                hidden, pooled = clip_text(cfg, t, ids)
                out.setdefault("pooled", []).append(pooled.tolist())
            elif cfg["model_type"] == "t5":
                hidden = t5_encoder(cfg, t, ids)
            else:
                raise SystemExit(f"model_type {cfg['model_type']} is not described here")
            out["hidden"].append(hidden.reshape(-1).tolist())
    with open(args.output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
