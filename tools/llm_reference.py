#!/usr/bin/python3
"""Independent decoder reference for hearth's tests, on Debian's python3-torch (1.13) and numpy.

Written from the architectures' definitions (the papers and the Hugging Face modeling semantics),
not from hearth's C++. Reads a Hugging Face folder (config.json; model.safetensors or the shards
of model.safetensors.index.json, parsed here by hand: 8-byte little-endian header length, JSON
header, raw little-endian F32/F16/BF16 tensors) or a GGUF file (v2/v3, F32/F16/BF16 tensors and
the ggml block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS, dequantized here
exactly (dequantize_ggml, written from the block layouts), llama.cpp's names and `<arch>.*` keys,
parsed here by hand); mlx-quantized folders (U32 codes with .scales/.biases, see mlx_dequantize)
are dequantized here, independently of hearth. It runs the full causal forward pass (no cache:
every step recomputes the whole sequence) in float64 (or float32) and decodes greedily:

  x = embed[ids]
  per layer:  h = x + o_proj(attention(rope(q), rope(k), v))   on rmsnorm(x)
              x = h + down(silu(gate(n)) * up(n))              with n = rmsnorm(h)
  logits = lm_head(rmsnorm(x))   (lm_head = embed when the embeddings are tied)

  rmsnorm(x) = x / sqrt(mean(x^2) + eps) * w
  attention: q.k / sqrt(head_dim), causal; a sliding window W keeps key j for query i only when
             i - j < W (HF Mistral/Phi-3 sliding_window; GGUF files: none, as llama.cpp, which
             ignores phi3.attention.sliding_window); query head h reads key/value head
             h // (heads / kv_heads) (GQA)
  rope:      angle(pos, i) = pos * inv_freq[i], inv_freq[i] = theta^(-2i/d), i < d/2.
             HF and GGUF phi3/qwen2/qwen3 rotate the halves (x[i], x[i + d/2]); GGUF `llama`
             rotates adjacent pairs (x[2i], x[2i+1]) (llama.cpp's converter permutes q/k rows).
             Scalings: linear (inv_freq / factor); llama3 (per-frequency: unchanged above the
             high-frequency wavelength, / factor below the low one, smooth in between; GGUF:
             the rope_freqs divisors); longrope/su (Phi-3: inv_freq / long_factor or short_factor,
             and cos/sin multiplied by sqrt(1 + ln(s) / ln(original context)), s = context /
             original context, unless the config gives attention_factor).
  Llama/Mistral: separate q/k/v/o and gate/up/down; Phi-3: fused qkv_proj rows [q | k | v] and
  gate_up_proj rows [gate | up]; Qwen2: q/k/v biases; Qwen3: per-head RMS norms of q and k
  (q_norm/k_norm over head_dim) before the rotary embedding.

Long vs short LongRoPE factors: chosen once per run, like llama.cpp: long when the context (--ctx,
default max_position_embeddings) exceeds original_max_position_embeddings; --longrope forces one.
(HF switches per sequence length instead; a full-context choice is what a KV-cached engine can do.)

Usage:
  llm_reference.py --model DIR_OR_GGUF --ids 1,2,3 [--steps N] --out PREFIX [--dtype float32]
writes PREFIX.logits.npy (float32, [len(ids) + N, vocab]: row i < len(ids) is the logits at
prompt position i, row len(ids) + k the logits after feeding greedy_ids[k]) and PREFIX.json
{prompt_ids, greedy_ids, final_argmax, margins, config}. greedy_ids[0] is the argmax of the last
prompt row; ties go to the lowest id. --jobs FILE.json runs a list of such runs in one process.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# File readers


def bf16_to_f32(raw):
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len).decode("utf-8"))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            arr = raw.view("<f4")
        elif dtype == "F16":
            arr = raw.view("<f2")
        elif dtype == "BF16":
            arr = bf16_to_f32(raw.view("<u2"))
        elif dtype == "U32":
            arr = raw.view("<u4")
        else:
            raise SystemExit(f"{path}: unsupported dtype {dtype} for {name}")
        tensors[name] = (arr, info["shape"])
    return tensors


GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                11: "<q", 12: "<d"}


# ggml block types: type id -> (elements per block, bytes per block).
GGML_BLOCKS = {2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
               11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18),
               23: (256, 136)}
IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                      dtype=np.float64)


def dequantize_ggml(buf, begin, ggml_type, n):
    """The n values of a row-major run of ggml blocks as float64. Layouts (halves are f16):
    Q4_0 d, 16 bytes of nibbles (element j < 16 the low nibble of byte j, j + 16 the high one),
    w = d (q - 8); Q4_1 d, m, nibbles, w = d q + m; Q5_0 d, u32 of fifth bits (bit j for element
    j), nibbles, w = d (q - 16); Q5_1 d, m, fifth bits, nibbles, w = d q + m; Q8_0 d, 32 int8.
    Super-blocks of 256: Q2_K 16 bytes (scale low nibble, min high nibble, per 16 elements), 64
    bytes of 2-bit quants (element e: byte 32 (e // 128) + e % 32, bits 2 ((e % 128) // 32)),
    d, dmin, w = d sc q - dmin mn; Q3_K 32 bytes high bits (element e: byte e % 32, bit e // 32),
    64 bytes low 2 bits as Q2_K, 12 bytes of sixteen 6-bit scales (low 4 bits: byte s, or the high
    nibble of byte s - 8 for s >= 8; high 2 bits: byte 8 + s % 4 at bit 2 (s // 4)) minus 32, d,
    w = d sc (q - 4 + 4 h); Q4_K d, dmin, 12 bytes of eight 6-bit scale/min pairs (j < 4: bytes j
    and j + 4 low 6 bits; j >= 4: low nibbles from byte j + 4 (scale) and its high nibble (min),
    top bits from the top 2 bits of bytes j - 4 (scale) and j (min)), 128 bytes of nibbles
    (element e of sub-block s = e // 32: byte 32 (s // 2) + e % 32, high nibble for odd s),
    w = d sc q - dmin mn; Q5_K as Q4_K with 32 bytes of fifth bits (byte e % 32, bit e // 32)
    before the nibbles; Q6_K 128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales (per 16),
    d: element e (n = e // 128, g = (e % 128) // 32, l = e % 32) low nibble of byte
    64 n + l + 32 (g % 2) (the high nibble for g >= 2), high bits (byte 32 n + l) >> 2 g,
    w = d sc (q - 32); IQ4_NL d, nibbles as Q4_0 indexing IQ4_VALUES, w = d value; IQ4_XS d,
    u16 high scale bits (2 per sub-block), 4 bytes low scale nibbles, 128 bytes of nibbles (16 per
    sub-block of 32, ordered as IQ4_NL), w = d (scale - 32) value."""
    qk, nbytes = GGML_BLOCKS[ggml_type]
    nb = n // qk
    b = np.frombuffer(buf, np.uint8, nb * nbytes, begin).reshape(nb, nbytes).astype(np.int64)

    def half(off):
        return (b[:, off] | (b[:, off + 1] << 8)).astype(np.uint16).view(np.float16).astype(
            np.float64)[:, None]

    def nibbles(qs):  # [nb, 16] -> [nb, 32]: low nibbles then high nibbles
        return np.concatenate([qs & 15, qs >> 4], axis=1)

    def fifth_bits(off):
        qh = b[:, off] | (b[:, off + 1] << 8) | (b[:, off + 2] << 16) | (b[:, off + 3] << 24)
        return (qh[:, None] >> np.arange(32)[None, :]) & 1

    e = np.arange(256)
    if ggml_type == 2:
        out = half(0) * (nibbles(b[:, 2:18]) - 8)
    elif ggml_type == 3:
        out = half(0) * nibbles(b[:, 4:20]) + half(2)
    elif ggml_type == 6:
        out = half(0) * ((nibbles(b[:, 6:22]) | (fifth_bits(2) << 4)) - 16)
    elif ggml_type == 7:
        out = half(0) * (nibbles(b[:, 8:24]) | (fifth_bits(4) << 4)) + half(2)
    elif ggml_type == 8:
        out = half(0) * b[:, 2:34].astype(np.uint8).view(np.int8).astype(np.float64)
    elif ggml_type in (10, 11):
        qs = b[:, 16:80] if ggml_type == 10 else b[:, 32:96]
        q = (qs[:, 32 * (e // 128) + e % 32] >> (2 * ((e % 128) // 32))) & 3
        if ggml_type == 10:
            sc = b[:, e // 16]
            out = half(80) * (sc & 15) * q - half(82) * (sc >> 4)
        else:
            s = np.arange(16)
            packed = b[:, 96:108]
            low = np.where(s < 8, packed[:, s % 8] & 15, packed[:, s % 8] >> 4)
            high = (packed[:, 8 + s % 4] >> (2 * (s // 4))) & 3
            scales = (low | (high << 4)) - 32
            h = (b[:, e % 32] >> (e // 32)) & 1
            out = half(108) * scales[:, e // 16] * (q - 4 + 4 * h)
    elif ggml_type in (12, 13):
        packed = b[:, 4:16]
        j = np.arange(8)
        jl = np.minimum(j, 3)
        sc = np.where(j < 4, packed[:, jl] & 63,
                      (packed[:, (j + 4) % 12] & 15) | ((packed[:, (j - 4) % 12] >> 6) << 4))
        mn = np.where(j < 4, packed[:, jl + 4] & 63,
                      (packed[:, (j + 4) % 12] >> 4) | ((packed[:, j % 12] >> 6) << 4))
        sub = e // 32
        off = 16 if ggml_type == 12 else 48
        q = (b[:, off + 32 * (sub // 2) + e % 32] >> (4 * (sub % 2))) & 15
        if ggml_type == 13:
            q = q | (((b[:, 16 + e % 32] >> sub) & 1) << 4)
        out = half(0) * sc[:, sub] * q - half(2) * mn[:, sub]
    elif ggml_type == 14:
        nn, g, l = e // 128, (e % 128) // 32, e % 32
        lo = b[:, 64 * nn + l + 32 * (g % 2)]
        low = np.where(g >= 2, lo >> 4, lo & 15)
        high = (b[:, 128 + 32 * nn + l] >> (2 * g)) & 3
        scales = b[:, 192:208].astype(np.uint8).view(np.int8).astype(np.int64)
        out = half(208) * scales[:, e // 16] * ((low | (high << 4)) - 32)
    elif ggml_type == 20:
        out = half(0) * IQ4_VALUES[nibbles(b[:, 2:18])]
    else:  # 23: IQ4_XS
        ib = np.arange(8)
        sh = b[:, 2] | (b[:, 3] << 8)
        ls = ((b[:, 4 + ib // 2] >> (4 * (ib % 2))) & 15) | (((sh[:, None] >> (2 * ib)) & 3) << 4)
        qs = b[:, 8:136].reshape(nb, 8, 16)
        vals = IQ4_VALUES[np.concatenate([qs & 15, qs >> 4], axis=2)]  # [nb, 8, 32]
        out = (half(0)[:, :, None] * (ls - 32)[:, :, None] * vals).reshape(nb, 256)
    return out.reshape(n)


class GGUFReader:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise SystemExit(f"{path}: not a GGUF file")
        self.pos = 4
        version = self.u32()
        if version not in (2, 3):
            raise SystemExit(f"{path}: GGUF version {version}")
        n_tensors = self.u64()
        n_kv = self.u64()
        self.kv = {}
        for _ in range(n_kv):
            key = self.string()
            self.kv[key] = self.value(self.u32())
        infos = []
        for _ in range(n_tensors):
            name = self.string()
            dims = [self.u64() for _ in range(self.u32())]
            infos.append((name, dims, self.u32(), self.u64()))
        align = self.kv.get("general.alignment", 32)
        data_start = (self.pos + align - 1) // align * align
        self.tensors = {}
        self.types = {name: ggml_type for name, _, ggml_type, _ in infos}  # ggml type ids
        for name, dims, ggml_type, offset in infos:
            n = int(np.prod(dims))
            begin = data_start + offset
            if ggml_type == 0:
                arr = np.frombuffer(self.buf, "<f4", n, begin)
            elif ggml_type == 1:
                arr = np.frombuffer(self.buf, "<f2", n, begin)
            elif ggml_type == 30:
                arr = bf16_to_f32(np.frombuffer(self.buf, "<u2", n, begin))
            elif ggml_type in GGML_BLOCKS:
                arr = dequantize_ggml(self.buf, begin, ggml_type, n)
            else:
                raise SystemExit(f"{path}: tensor {name} has ggml type {ggml_type} "
                                 "(not F32/F16/BF16 or a supported block type)")
            self.tensors[name] = (arr, list(reversed(dims)))

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def u32(self):
        return self.take("<I")

    def u64(self):
        return self.take("<Q")

    def string(self):
        n = self.u64()
        s = self.buf[self.pos : self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            item_type = self.u32()
            return [self.value(item_type) for _ in range(self.u64())]
        return self.take(GGUF_SCALARS[t])


# ------------------------------------------------------------------------------------------------
# The model: a config (plain dict of the hyperparameters below) and weights under short names:
# embed, norm, output; per layer L: L.attn_norm, L.q, L.k, L.v, L.qkv, L.q_bias, L.k_bias,
# L.v_bias, L.q_norm, L.k_norm, L.o, L.ffn_norm, L.gate, L.up, L.gate_up, L.down.

HF_LAYER = {
    "input_layernorm.weight": "attn_norm", "self_attn.q_proj.weight": "q",
    "self_attn.k_proj.weight": "k", "self_attn.v_proj.weight": "v",
    "self_attn.q_proj.bias": "q_bias", "self_attn.k_proj.bias": "k_bias",
    "self_attn.v_proj.bias": "v_bias", "self_attn.qkv_proj.weight": "qkv",
    "self_attn.q_norm.weight": "q_norm", "self_attn.k_norm.weight": "k_norm",
    "self_attn.o_proj.weight": "o", "post_attention_layernorm.weight": "ffn_norm",
    "mlp.gate_proj.weight": "gate", "mlp.up_proj.weight": "up", "mlp.gate_up_proj.weight": "gate_up",
    "mlp.down_proj.weight": "down",
}

GGUF_LAYER = {
    "attn_norm.weight": "attn_norm", "attn_q.weight": "q", "attn_k.weight": "k", "attn_v.weight": "v",
    "attn_q.bias": "q_bias", "attn_k.bias": "k_bias", "attn_v.bias": "v_bias", "attn_qkv.weight": "qkv",
    "attn_q_norm.weight": "q_norm", "attn_k_norm.weight": "k_norm", "attn_output.weight": "o",
    "ffn_norm.weight": "ffn_norm", "ffn_gate.weight": "gate", "ffn_up.weight": "up",
    "ffn_down.weight": "down",
}

HF_ARCHS = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Phi3ForCausalLM": "phi3",
            "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


def mlx_dequantize(packed, shape, scales, biases, bits, group_size):
    """MLX affine quantization, from MLX's description: each row of the U32 tensor is one
    little-endian bit stream in which code i takes bits [i*bits, (i+1)*bits), lowest bit first;
    weight = scale * code + bias, with one scale and bias per group of group_size inputs."""
    rows, words = shape
    n = words * 32 // bits
    raw = np.ascontiguousarray(packed, dtype="<u4").reshape(rows, words).view(np.uint8)
    stream = np.unpackbits(raw, axis=1, bitorder="little").reshape(rows, n, bits)
    codes = (stream.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=2)
    s = np.asarray(scales, dtype=np.float64).reshape(rows, n // group_size, 1)
    b = np.asarray(biases, dtype=np.float64).reshape(rows, n // group_size, 1)
    w = codes.reshape(rows, n // group_size, group_size) * s + b
    return w.reshape(-1), [rows, n]


def mlx_dequantize_all(cfg, raw):
    """Replaces every mlx-quantized weight (X.weight with X.scales and X.biases) by its
    dequantized float64 values; config.json "quantization" (or "quantization_config") gives
    bits and group_size, per module path where it lists one."""
    q = cfg.get("quantization") or cfg.get("quantization_config")
    if not q or "bits" not in q:
        return raw
    out = {}
    for name, t in raw.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        base = name[: -len(".weight")] if name.endswith(".weight") else None
        if base is not None and base + ".scales" in raw:
            spec = q.get(base) if isinstance(q.get(base), dict) else q
            arr, shape = mlx_dequantize(t[0], t[1], raw[base + ".scales"][0],
                                        raw[base + ".biases"][0], spec["bits"], spec["group_size"])
            out[name] = (arr, shape)
        else:
            out[name] = t
    return out


def load_hf(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    archs = cfg.get("architectures") or []
    if not archs or archs[0] not in HF_ARCHS:
        raise SystemExit(f"{folder}/config.json: unsupported architectures {archs}")
    arch = HF_ARCHS[archs[0]]
    index = os.path.join(folder, "model.safetensors.index.json")
    raw = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        for name in files:
            raw.update(read_safetensors(os.path.join(folder, name)))
    else:
        raw = read_safetensors(os.path.join(folder, "model.safetensors"))
    raw = mlx_dequantize_all(cfg, raw)
    weights = {}
    for name, t in raw.items():
        if name == "model.embed_tokens.weight":
            weights["embed"] = t
        elif name == "model.norm.weight":
            weights["norm"] = t
        elif name == "lm_head.weight":
            weights["output"] = t
        elif name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            if rest not in HF_LAYER:
                raise SystemExit(f"{folder}: unexpected tensor {name}")
            weights[f"{layer}.{HF_LAYER[rest]}"] = t
        elif name.endswith("rotary_emb.inv_freq"):
            continue
        else:
            raise SystemExit(f"{folder}: unexpected tensor {name}")
    heads = cfg["num_attention_heads"]
    c = {
        "arch": arch,
        "hidden": cfg["hidden_size"],
        "layers": cfg["num_hidden_layers"],
        "heads": heads,
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "vocab": cfg["vocab_size"],
        "eps": cfg["rms_norm_eps"],
        "theta": cfg.get("rope_theta", 10000.0),
        "context": cfg["max_position_embeddings"],
        "rope_style": "neox",
        "tied": cfg.get("tie_word_embeddings", False),
        "windows": [None] * cfg["num_hidden_layers"],
    }
    if cfg.get("partial_rotary_factor", 1.0) != 1.0:
        raise SystemExit(f"{folder}: partial_rotary_factor is not supported")
    window = cfg.get("sliding_window")
    if arch in ("mistral", "phi3") and window:
        c["windows"] = [window] * c["layers"]
    if arch in ("qwen2", "qwen3") and cfg.get("use_sliding_window") and window:
        first = cfg.get("max_window_layers", c["layers"])
        c["windows"] = [window if i >= first else None for i in range(c["layers"])]
    rs = cfg.get("rope_scaling") or {}
    kind = (rs.get("rope_type") or rs.get("type") or "default").lower()
    if kind == "default":
        pass
    elif kind == "linear":
        c["rope_linear"] = rs["factor"]
    elif kind == "llama3":
        c["rope_llama3"] = rs
    elif kind in ("longrope", "su"):
        orig = cfg.get("original_max_position_embeddings") or rs["original_max_position_embeddings"]
        scale = c["context"] / orig
        attn = rs.get("attention_factor")
        if attn is None:
            attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0
        c["longrope"] = {"long": rs["long_factor"], "short": rs["short_factor"], "original": orig,
                         "attn_factor": attn}
    else:
        raise SystemExit(f"{folder}/config.json: rope_scaling {kind} is not supported")
    if c["tied"] or "output" not in weights:
        if not c["tied"]:
            raise SystemExit(f"{folder}: no lm_head.weight and tie_word_embeddings is false")
        weights["output"] = weights["embed"]
    return c, weights


def load_gguf(path):
    g = GGUFReader(path)
    arch = g.kv["general.architecture"]
    if arch not in ("llama", "phi3", "qwen2", "qwen3"):
        raise SystemExit(f"{path}: unsupported architecture {arch}")
    k = lambda name, default=None: g.kv.get(f"{arch}.{name}", default)
    weights = {}
    extra = {}
    for name, t in g.tensors.items():
        if name == "token_embd.weight":
            weights["embed"] = t
        elif name == "output_norm.weight":
            weights["norm"] = t
        elif name == "output.weight":
            weights["output"] = t
        elif name.startswith("blk."):
            layer, rest = name[4:].split(".", 1)
            if rest not in GGUF_LAYER:
                raise SystemExit(f"{path}: unexpected tensor {name}")
            short = GGUF_LAYER[rest]
            if arch == "phi3" and short == "up":
                short = "gate_up"  # llama.cpp's phi3 ffn_up holds gate and up
            weights[f"{layer}.{short}"] = t
        elif name in ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"):
            extra[name] = t[0].astype(np.float64)
        else:
            raise SystemExit(f"{path}: unexpected tensor {name}")
    heads = k("attention.head_count")
    hidden = k("embedding_length")
    c = {
        "arch": arch,
        "hidden": hidden,
        "layers": k("block_count"),
        "heads": heads,
        "kv_heads": k("attention.head_count_kv", heads),
        "head_dim": k("attention.key_length", hidden // heads),
        "vocab": weights["embed"][1][0],
        "eps": k("attention.layer_norm_rms_epsilon"),
        "theta": k("rope.freq_base", 10000.0),
        "context": k("context_length"),
        "rope_style": "norm" if arch == "llama" else "neox",
        "tied": "output" not in weights,
        "windows": [None] * k("block_count"),
    }
    if c["head_dim"] != k("rope.dimension_count", c["head_dim"]):
        raise SystemExit(f"{path}: partial rotary dimensions are not supported")
    # phi3.attention.sliding_window is read but not applied: llama.cpp disables Phi-3's window
    # ("Phi SWA is currently disabled", llama-model.cpp), so its GGUF semantics have none (HF
    # folders keep transformers' window). Mistral GGUFs are `llama`, written without one.
    if k("rope.scaling.type") == "linear":
        c["rope_linear"] = k("rope.scaling.factor")
    elif k("rope.scaling.type") not in (None, "none"):
        raise SystemExit(f"{path}: rope scaling {k('rope.scaling.type')} is not supported")
    if "rope_freqs.weight" in extra:
        c["rope_divisors"] = extra["rope_freqs.weight"]
    if "rope_factors_long.weight" in extra:
        c["longrope"] = {"long": extra["rope_factors_long.weight"],
                         "short": extra["rope_factors_short.weight"],
                         "original": k("rope.scaling.original_context_length"),
                         "attn_factor": k("rope.scaling.attn_factor", 1.0)}
    if c["tied"]:
        weights["output"] = weights["embed"]
    return c, weights


# ------------------------------------------------------------------------------------------------
# The forward pass


class Decoder:
    def __init__(self, cfg, raw, dtype, ctx, longrope_choice):
        self.c = cfg
        self.dtype = dtype
        self.w = {}
        for name, (arr, shape) in raw.items():
            self.w[name] = torch.from_numpy(np.asarray(arr, dtype=np.float64).reshape(shape)).to(dtype)
        d = cfg["head_dim"]
        inv_freq = 1.0 / cfg["theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d)
        self.attn_factor = 1.0
        if "rope_linear" in cfg:
            inv_freq = inv_freq / cfg["rope_linear"]
        if "rope_llama3" in cfg:
            rs = cfg["rope_llama3"]
            factor, orig = rs["factor"], rs["original_max_position_embeddings"]
            low_wavelen = orig / rs["low_freq_factor"]
            high_wavelen = orig / rs["high_freq_factor"]
            out = []
            for f in inv_freq:
                wavelen = 2 * math.pi / f
                if wavelen < high_wavelen:
                    out.append(f)
                elif wavelen > low_wavelen:
                    out.append(f / factor)
                else:
                    smooth = (orig / wavelen - rs["low_freq_factor"]) / (
                        rs["high_freq_factor"] - rs["low_freq_factor"])
                    out.append((1 - smooth) * f / factor + smooth * f)
            inv_freq = np.array(out)
        if "rope_divisors" in cfg:
            inv_freq = inv_freq / cfg["rope_divisors"]
        self.longrope = None
        if "longrope" in cfg:
            lr = cfg["longrope"]
            ctx = ctx or cfg["context"]
            self.longrope = longrope_choice or ("long" if ctx > lr["original"] else "short")
            inv_freq = inv_freq / np.asarray(lr[self.longrope], dtype=np.float64)
            self.attn_factor = lr["attn_factor"]
        self.inv_freq = inv_freq

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["eps"]) * w

    def rope(self, x, n):
        # x: [heads, n, d]
        d = self.c["head_dim"]
        pos = np.arange(n, dtype=np.float64)[:, None]
        ang = torch.from_numpy(pos * self.inv_freq[None, :]).to(self.dtype)  # [n, d/2]
        cos = torch.cos(ang) * self.attn_factor
        sin = torch.sin(ang) * self.attn_factor
        if self.c["rope_style"] == "neox":
            a, b = x[..., : d // 2], x[..., d // 2 :]
            return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids):
        c, w = self.c, self.w
        n = len(ids)
        H, KV, d = c["heads"], c["kv_heads"], c["head_dim"]
        x = w["embed"][torch.tensor(ids, dtype=torch.long)]
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        for layer in range(c["layers"]):
            p = f"{layer}."
            a = self.rmsnorm(x, w[p + "attn_norm"])
            if p + "qkv" in w:
                qkv = a @ w[p + "qkv"].T
                q, k, v = torch.split(qkv, [H * d, KV * d, KV * d], dim=-1)
            else:
                q, k, v = a @ w[p + "q"].T, a @ w[p + "k"].T, a @ w[p + "v"].T
            if p + "q_bias" in w:
                q, k, v = q + w[p + "q_bias"], k + w[p + "k_bias"], v + w[p + "v_bias"]
            q = q.view(n, H, d).transpose(0, 1)
            k = k.view(n, KV, d).transpose(0, 1)
            v = v.view(n, KV, d).transpose(0, 1)
            if p + "q_norm" in w:
                q = self.rmsnorm(q, w[p + "q_norm"])
                k = self.rmsnorm(k, w[p + "k_norm"])
            q, k = self.rope(q, n), self.rope(k, n)
            group = H // KV
            k = k.repeat_interleave(group, dim=0)  # query head h reads kv head h // group
            v = v.repeat_interleave(group, dim=0)
            scores = q @ k.transpose(1, 2) / math.sqrt(d)
            allowed = j <= i
            window = c["windows"][layer]
            if window:
                allowed = allowed & (i - j < window)
            scores = scores.masked_fill(~allowed, float("-inf"))
            ctx = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(n, H * d)
            x = x + ctx @ w[p + "o"].T
            f = self.rmsnorm(x, w[p + "ffn_norm"])
            if p + "gate_up" in w:
                gate, up = torch.chunk(f @ w[p + "gate_up"].T, 2, dim=-1)
            else:
                gate, up = f @ w[p + "gate"].T, f @ w[p + "up"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "down"].T
        return self.rmsnorm(x, w["norm"]) @ w["output"].T


def argmax_and_margin(row):
    top = torch.topk(row, 2)
    best = int(torch.nonzero(row == top.values[0])[0])  # ties: lowest id
    return best, float(top.values[0] - top.values[1])


def run_job(model_path, ids, steps, out, dtype_name="float64", ctx=0, longrope=None):
    if not ids:
        raise SystemExit("no prompt ids")
    if os.path.isdir(model_path):
        cfg, raw = load_hf(model_path)
    else:
        cfg, raw = load_gguf(model_path)
    if max(ids) >= cfg["vocab"] or min(ids) < 0:
        raise SystemExit(f"{model_path}: token id out of range for vocab {cfg['vocab']}")
    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    model = Decoder(cfg, raw, dtype, ctx, longrope)
    seq = list(ids)
    greedy, margins = [], []
    with torch.no_grad():
        for _ in range(steps):
            best, margin = argmax_and_margin(model.forward(seq)[-1])
            greedy.append(best)
            margins.append(margin)
            seq.append(best)
        logits = model.forward(seq)
        final, _ = argmax_and_margin(logits[-1])
    np.save(out + ".logits.npy", logits.to(torch.float32).numpy())
    summary = {k: v for k, v in cfg.items() if k not in ("longrope", "rope_divisors", "rope_llama3")}
    summary["longrope_factors"] = model.longrope
    summary["attn_factor"] = model.attn_factor
    with open(out + ".json", "w") as f:
        json.dump({"prompt_ids": ids, "greedy_ids": greedy, "final_argmax": final,
                   "greedy_margins": margins, "config": summary}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="HF folder or .gguf file")
    ap.add_argument("--ids", help="comma-separated prompt token ids")
    ap.add_argument("--steps", type=int, default=0, help="greedy steps")
    ap.add_argument("--out", help="output prefix")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--ctx", type=int, default=0, help="context for the LongRoPE choice")
    ap.add_argument("--longrope", choices=["long", "short"], help="force LongRoPE factors")
    ap.add_argument("--jobs", help="JSON file: a list of {model, ids, steps, out[, dtype, ctx, "
                    "longrope]} run in one process (saves the start-up per model)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.jobs:
        with open(args.jobs) as f:
            jobs = json.load(f)
        for j in jobs:
            run_job(j["model"], j["ids"], j.get("steps", 0), j["out"], j.get("dtype", "float64"),
                    j.get("ctx", 0), j.get("longrope"))
        return 0
    if not (args.model and args.ids and args.out):
        ap.error("--model, --ids and --out are required (or --jobs)")
    ids = [int(t) for t in args.ids.split(",") if t.strip()]
    run_job(args.model, ids, args.steps, args.out, args.dtype, args.ctx, args.longrope)
    return 0


if __name__ == "__main__":
    sys.exit(main())
