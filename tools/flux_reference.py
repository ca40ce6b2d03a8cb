#!/usr/bin/python3
"""Independent reference for hearth's FLUX.1 transformer and sampler schedule, on Debian's
python3-torch, in float64.

Written from the architecture description of FLUX.1 (Black Forest Labs' flux repository's model
description, as diffusers' FluxTransformer2DModel lays out the weights), not from hearth's C++
and without diffusers. Reads a diffusers transformer/ folder (config.json, the safetensors shards,
parsed by text_encoder_reference.read_safetensors), or a single file in Black Forest Labs' layout:
flux1-*.safetensors or a GGUF of general.architecture "flux" (city96's files: the same names,
shapes outermost first once GGUF's dims are reversed), whose block-quantized matrices are
dequantized by llm_reference.GGUFReader (written from ggml's block layouts). The BFL names are
unfused into diffusers' (qkv -> to_q/k/v; linear1 -> to_q/k/v and proj_mlp; final_layer's
(shift, scale) -> norm_out's (scale, shift)); the shape comes from the tensors (128-wide heads,
axes 16/56/56).

  temb = time(sinus(1000 t)) [+ guidance(sinus(1000 g))] + text(pooled)
         sinus(s) = [cos(s f_i), sin(s f_i)], f_i = 10000^(-i / 128), i < 128
         time / guidance / text: linear_2(silu(linear_1(.)))
  e = silu(temb)
  txt = context_embedder(context); img = x_embedder(image)
  rope: for axis a with width d_a (axes_dims_rope), position p = ids[:, a]: the complex pairs
        (x[2i], x[2i+1]) of that axis's slice of every head times exp(1j p theta^(-2i / d_a))
  double block: (shift, scale, gate, shift2, scale2, gate2) = norm1.linear(e) (img),
        norm1_context.linear(e) (txt); per stream y = LN(x) (1 + scale) + shift,
        q, k, v = to_q/k/v(y) (txt: add_q/k/v_proj), q, k RMS-normed per head (norm_q / norm_k;
        txt: norm_added_q / k), rope on [txt; img], softmax(q k / sqrt(head_dim)) v jointly;
        x += gate * out(attn) (img: to_out.0; txt: to_add_out);
        x += gate2 * ff(LN(x) (1 + scale2) + shift2), ff = net.2(gelu_tanh(net.0.proj(.)))
  single block on x = [txt; img]: (shift, scale, gate) = norm.linear(e); y = LN(x)(1+scale)+shift;
        x += gate * proj_out([attn(y) | gelu_tanh(proj_mlp(y))])
  out = proj_out(LN(img) (1 + scale) + shift), (scale, shift) = norm_out.linear(e)
  LN: no affine, eps 1e-6; RMS: eps 1e-6.

Sampler (FlowMatchEulerDiscreteScheduler as the FLUX pipelines call it):
  sigmas = linspace(1, 1 / steps, steps); dynamic: mu = m * tokens + b through (base_seq,
  base_shift) and (max_seq, max_shift), sigma = e^mu / (e^mu + 1 / sigma - 1); static:
  shift sigma / (1 + (shift - 1) sigma); then 0 appended.

Usage: flux_reference.py --model DIR_OR_FILE [--quantize q4_0|q8_0] [--lora PATH[:SCALE]]...
  --input in.json --output out.json
  LoRA adapters add scale * s * B (A x) to each layer they name (s = alpha / rank with alpha).
  in.json: {"calls": [{"image", "img_ids", "context", "txt_ids", "pooled", "timestep",
  "guidance"?}, ...]} (flattened arrays) -> {"velocity": [[...], ...]}; --q8-activations adds
  "velocity_q8", computed with the inputs of the block-quantized products (the GGUF's quantized
  tensors, or all matrices with --quantize) rounded to 8 bits per block of 32 as hearth's
  quantized kernels round them, which leaves only f32-versus-float64 differences.
  Weights may also be float8 (F8_E4M3 / F8_E5M2, decoded by a table of all 256 values written
  from the formats' definitions, times a scale_weight / weight_scale where one is stored), or an
  mflux saved transformer/ folder (quantization_level / mflux_version metadata, no config.json:
  MLX affine weights dequantized from MLX's description of the packing, ff.linear1/2 renamed).
flux_reference.py --sigmas in.json --output out.json
  in.json: {"cases": [{"steps", "tokens", "dynamic", "shift", "base_shift", "max_shift",
  "base_seq", "max_seq"}, ...]} -> {"sigmas": [[...], ...]}
flux_reference.py --pipeline DIR --input in.json --output out.json
  The whole text-to-image (or image-to-image) pipeline on a diffusers FLUX folder, as diffusers'
  FluxPipeline / FluxImg2ImgPipeline run it: CLIP pooled and T5 hidden states
  (text_encoder_reference.py) of the given padded ids, the scheduler's sigmas, the 2x2-packed
  noise, the Euler loop over the transformer above, unpacking and the VAE decode
  (vae_reference.py), then diffusers' postprocess (x / 2 + 0.5 clamped, * 255, rounded half to
  even). Image-to-image: sigmas from t_start = int(max(steps - steps * strength, 0)) on, and the
  start latent sigma_0 * noise + (1 - sigma_0) * encode(image) (the encoder's mean).
  in.json: {"clip_ids", "t5_ids", "noise": NPY [16, H/8, W/8], "steps", "guidance"?,
  "init_image"?: NPY [H, W, 3] in [-1, 1], "strength"?}
  -> {"image": [H * W * 3 uint8, HWC], "sigmas": [...]}
"""

import argparse
import glob
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_reference import GGUFReader  # noqa: E402
from text_encoder_reference import read_safetensors  # noqa: E402

EPS = 1e-6


def ln(x):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS)


def rms(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x * torch.sigmoid(x)


def sinus(s, dim=256):
    half = dim // 2
    f = torch.tensor([10000.0 ** (-i / half) for i in range(half)], dtype=torch.float64)
    a = s * f
    return torch.cat([torch.cos(a), torch.sin(a)])


def from_bfl(t, quantized=()):
    """Black Forest Labs' tensors (prefix removed) under diffusers' names, the config, and the
    diffusers names of the weights whose BFL tensors are in quantized."""
    d, in_ch = t["img_in.weight"].shape
    hd = t["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    layers = sum(1 for n in t if n.startswith("double_blocks.") and n.endswith("img_mod.lin.weight"))
    singles = sum(1 for n in t if n.startswith("single_blocks.") and n.endswith("linear1.weight"))
    guidance = "guidance_in.in_layer.weight" in t
    out = {}
    qnames = set()

    def lin(dst, src, sizes=None, part=0):
        if f"{src}.weight" in quantized:
            qnames.add(f"{dst}.weight")
        for s in ("weight", "bias"):
            x = t[f"{src}.{s}"]
            if sizes is not None:
                x = torch.split(x, sizes, dim=0)[part]
            out[f"{dst}.{s}"] = x

    lin("x_embedder", "img_in")
    lin("context_embedder", "txt_in")
    emb = [("timestep_embedder", "time_in"), ("text_embedder", "vector_in")]
    if guidance:
        emb.append(("guidance_embedder", "guidance_in"))
    for dst, src in emb:
        lin(f"time_text_embed.{dst}.linear_1", f"{src}.in_layer")
        lin(f"time_text_embed.{dst}.linear_2", f"{src}.out_layer")
    for i in range(layers):
        p, q = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        lin(p + "norm1.linear", q + "img_mod.lin")
        lin(p + "norm1_context.linear", q + "txt_mod.lin")
        for j, n in enumerate(["to_q", "to_k", "to_v"]):
            lin(p + "attn." + n, q + "img_attn.qkv", [d, d, d], j)
        for j, n in enumerate(["add_q_proj", "add_k_proj", "add_v_proj"]):
            lin(p + "attn." + n, q + "txt_attn.qkv", [d, d, d], j)
        for dst, src in [("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                         ("norm_added_q", "txt_attn.norm.query_norm"),
                         ("norm_added_k", "txt_attn.norm.key_norm")]:
            out[p + "attn." + dst + ".weight"] = t[q + src + ".scale"]
        lin(p + "attn.to_out.0", q + "img_attn.proj")
        lin(p + "attn.to_add_out", q + "txt_attn.proj")
        lin(p + "ff.net.0.proj", q + "img_mlp.0")
        lin(p + "ff.net.2", q + "img_mlp.2")
        lin(p + "ff_context.net.0.proj", q + "txt_mlp.0")
        lin(p + "ff_context.net.2", q + "txt_mlp.2")
    for i in range(singles):
        p, q = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        lin(p + "norm.linear", q + "modulation.lin")
        for j, n in enumerate(["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]):
            lin(p + n, q + "linear1", [d, d, d, 4 * d], j)
        out[p + "attn.norm_q.weight"] = t[q + "norm.query_norm.scale"]
        out[p + "attn.norm_k.weight"] = t[q + "norm.key_norm.scale"]
        lin(p + "proj_out", q + "linear2")
    for s in ("weight", "bias"):
        shift, scale = torch.split(t[f"final_layer.adaLN_modulation.1.{s}"], [d, d], dim=0)
        out[f"norm_out.linear.{s}"] = torch.cat([scale, shift])
    lin("proj_out", "final_layer.linear")
    if "final_layer.adaLN_modulation.1.weight" in quantized:
        qnames.add("norm_out.linear.weight")
    cfg = {"num_attention_heads": d // hd, "attention_head_dim": hd, "axes_dims_rope": [16, 56, 56],
           "in_channels": in_ch, "joint_attention_dim": t["txt_in.weight"].shape[1],
           "pooled_projection_dim": t["vector_in.in_layer.weight"].shape[1],
           "guidance_embeds": guidance, "num_layers": layers, "num_single_layers": singles}
    return out, cfg, qnames


def read_single_file(path):
    """A BFL .safetensors or a flux GGUF as float64 tensors, ComfyUI's prefix removed, and the
    names of the block-quantized ones."""
    quantized = set()
    if path.endswith(".gguf"):
        g = GGUFReader(path)
        if g.kv.get("general.architecture") != "flux":
            raise SystemExit(f"{path}: not a flux GGUF")
        t = {n: torch.tensor(np.asarray(a, dtype=np.float64).reshape(shape))
             for n, (a, shape) in g.tensors.items()}
        quantized = {n for n, ty in g.types.items() if ty not in (0, 1, 30)}
    else:
        t = apply_float8_scales(read_tensors(path)[0])
    prefix = "model.diffusion_model."

    def strip(n):
        return n[len(prefix):] if n.startswith(prefix) else n

    return {strip(n): v for n, v in t.items()}, {strip(n) for n in quantized}


def float8_table(kind):
    """The value of every byte of a float8 type, from the format's definition (PyTorch 1.13 has
    no float8): e4m3fn is 1 sign, 4 exponent bits of bias 7, 3 mantissa bits, exponent 0
    subnormal (m 2^-9), no infinities, 0x7F / 0xFF NaN; e5m2 is 1 sign, 5 exponent bits of bias
    15, 2 mantissa bits, IEEE-style (exponent 31: infinity or NaN)."""
    ebits, mbits, bias = (4, 3, 7) if kind == "F8_E4M3" else (5, 2, 15)
    t = np.zeros(256, dtype=np.float64)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e, m = (b >> mbits) & ((1 << ebits) - 1), b & ((1 << mbits) - 1)
        if kind == "F8_E4M3" and e == 15 and m == 7:
            t[b] = np.nan
        elif kind == "F8_E5M2" and e == 31:
            t[b] = sign * np.inf if m == 0 else np.nan
        elif e == 0:
            t[b] = sign * m * 2.0 ** (1 - bias - mbits)
        else:
            t[b] = sign * (1 + m / 2.0 ** mbits) * 2.0 ** (e - bias)
    return t


def read_tensors(path):
    """A safetensors file: {name: float64 tensor} for F32 / F16 / BF16 / F8_E4M3 / F8_E5M2, and
    U32 tensors as numpy uint32 arrays (MLX's packed codes); and the metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin : base + end]
        dt, shape = info["dtype"], info["shape"]
        if dt == "U32":
            out[name] = np.frombuffer(raw, dtype="<u4").reshape(shape)
            continue
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            a = a.astype(np.float64)
        elif dt in ("F8_E4M3", "F8_E5M2"):
            a = float8_table(dt)[np.frombuffer(raw, dtype=np.uint8)]
        else:
            raise SystemExit(f"{path}: unsupported dtype {dt} for {name}")
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out, header.get("__metadata__", {})


def apply_float8_scales(t):
    """Scaled fp8 files: weight * <base>.scale_weight (ComfyUI) or <base>.weight_scale (one value
    or one per row); input scales and the scaled_fp8 marker dropped."""
    for n in list(t):
        for sfx in (".scale_weight", ".weight_scale"):
            if n.endswith(sfx):
                w = n[: -len(sfx)] + ".weight"
                s = t.pop(n).reshape(-1)
                t[w] = t[w] * (s.reshape(-1, 1) if s.numel() > 1 else s[0])
        if n.endswith((".scale_input", ".input_scale")) or n == "scaled_fp8":
            t.pop(n, None)
    return t


def mlx_dequantize(packed, scales, biases, bits, group):
    """MLX affine codes (from MLX's description): each row of uint32 words is one little-endian
    bit stream, code i in bits [i bits, (i + 1) bits); w = scale * q + bias per group of
    group consecutive inputs."""
    rows = packed.shape[0]
    stream = np.unpackbits(packed.astype("<u4").view(np.uint8).reshape(rows, -1), axis=1,
                           bitorder="little")
    cols = stream.shape[1] // bits
    q = (stream.reshape(rows, cols, bits).astype(np.int64) << np.arange(bits)).sum(axis=2)
    s = scales.numpy().repeat(group, axis=1)
    b = biases.numpy().repeat(group, axis=1)
    return torch.from_numpy(s * q + b)


MFLUX_RENAMES = [(".ff.linear1.", ".ff.net.0.proj."), (".ff.linear2.", ".ff.net.2."),
                 (".ff_context.linear1.", ".ff_context.net.0.proj."),
                 (".ff_context.linear2.", ".ff_context.net.2.")]


def read_mflux(folder, metadata, raw):
    """mflux's saved transformer/ (mflux-save): diffusers' names but ff.linear1 / ff.linear2,
    quantized Linear layers as MLX affine (weight U32, scales, biases; quantization_level bits,
    MLX's default group size 64), no config.json: the tensors (dequantized) under diffusers'
    names and the config from their shapes."""
    level = metadata.get("quantization_level", "None")
    bits = None if level in ("None", "null", "") else int(level)
    out = {}
    for n, v in raw.items():
        if n.endswith((".scales", ".biases")):
            continue
        if n.endswith(".weight") and n[:-7] + ".scales" in raw:
            v = mlx_dequantize(v, raw[n[:-7] + ".scales"], raw[n[:-7] + ".biases"], bits, 64)
        for a, b in MFLUX_RENAMES:
            n = n.replace(a, b)
        out[n] = v
    d, in_ch = out["x_embedder.weight"].shape
    hd = out["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    cfg = {"num_attention_heads": d // hd, "attention_head_dim": hd, "axes_dims_rope": [16, 56, 56],
           "in_channels": in_ch, "joint_attention_dim": out["context_embedder.weight"].shape[1],
           "pooled_projection_dim": out["time_text_embed.text_embedder.linear_1.weight"].shape[1],
           "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in out,
           "num_layers": sum(1 for n in out if n.endswith(".norm1.linear.weight")),
           "num_single_layers": sum(1 for n in out if n.startswith("single_transformer_blocks.")
                                    and n.endswith(".norm.linear.weight"))}
    return out, cfg


def quantize_dequantize(w, qtype):
    """w [rows, cols] through ggml's q4_0 or q8_0 reference quantizer and back, per block of 32
    consecutive inputs (from ggml's block description): q4_0 takes the value of largest magnitude
    m, d = m / -8, q = min(15, trunc(x / d + 8.5)), w = f16(d) (q - 8); q8_0 d = max|x| / 127,
    q = x / d rounded half away from zero, w = f16(d) q; x / d is x times the f32 inverse of the
    unrounded f32 d. The weights are f32 values, as the quantizer sees them."""
    x = w.to(torch.float32).numpy().reshape(-1, 32)
    if qtype == "q4_0":
        m = x[np.arange(x.shape[0]), np.abs(x).argmax(axis=1)]
        d = (m / np.float32(-8.0)).astype(np.float32)
        inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d != 0)
        q = np.minimum(15, np.trunc(x * inv[:, None] + np.float32(8.5))) - 8
    else:
        d = (np.abs(x).max(axis=1) / np.float32(127.0)).astype(np.float32)
        inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d != 0)
        y = x * inv[:, None]
        q = np.sign(y) * np.floor(np.abs(y) + np.float32(0.5))
    d16 = d.astype(np.float16).astype(np.float64)
    return torch.from_numpy((d16[:, None] * q).reshape(w.shape))


def q8_activations(x):
    """x rounded as hearth's quantized products round their input (kernels/quant_ggml.hpp): per
    block of 32 consecutive values, d = max|x| / 127 (f32), x = d round(x / d), x / d as x times
    the f32 inverse of d, rounded half to even."""
    shape = x.shape
    b = x.reshape(-1, 32).to(torch.float32)
    d = b.abs().amax(dim=1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), torch.zeros_like(d))
    q = torch.round(b * inv)
    return (q * d).to(torch.float64).reshape(shape)


BFL_DOUBLE = {"img_mod.lin": ["norm1.linear"], "txt_mod.lin": ["norm1_context.linear"],
              "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
              "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
              "img_attn.proj": ["attn.to_out.0"], "txt_attn.proj": ["attn.to_add_out"],
              "img_mlp.0": ["ff.net.0.proj"], "img_mlp.2": ["ff.net.2"],
              "txt_mlp.0": ["ff_context.net.0.proj"], "txt_mlp.2": ["ff_context.net.2"]}
BFL_SINGLE = {"modulation.lin": ["norm.linear"],
              "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
              "linear2": ["proj_out"]}
BFL_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
           "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
           "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
           "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
           "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
           "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
           "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
           "final_layer.linear": "proj_out"}


def lora_names(t, cfg):
    """LoRA module name (diffusers or BFL) -> [(diffusers linear, its rows in the module's up
    matrix)], and whether the module's rows are BFL's final (shift, scale) order."""
    out = {}
    for n, w in t.items():
        if n.endswith(".weight") and w.dim() == 2:
            out[n[: -len(".weight")]] = ([n[: -len(".weight")]], False)
    for i in range(cfg["num_layers"]):
        for b, ds in BFL_DOUBLE.items():
            out[f"double_blocks.{i}.{b}"] = ([f"transformer_blocks.{i}.{x}" for x in ds], False)
    for i in range(cfg["num_single_layers"]):
        for b, ds in BFL_SINGLE.items():
            out[f"single_blocks.{i}.{b}"] = ([f"single_transformer_blocks.{i}.{x}" for x in ds],
                                             False)
    for b, x in BFL_TOP.items():
        out[b] = ([x], False)
    out["final_layer.adaLN_modulation.1"] = (["norm_out.linear"], True)
    return out


def read_lora(spec, t, cfg):
    """PATH[:SCALE] -> {diffusers linear: [(A, B, scale)]}: lora_A/lora_B or lora_down/lora_up
    (+ alpha: scale * alpha / rank), names as diffusers, BFL or kohya (lora_unet_ + the name with
    '_' for '.') give them; BFL's fused up matrices split by the rows of the parts."""
    path, scale = spec, 1.0
    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        try:
            path, scale = head, float(tail)
        except ValueError:
            pass
    names = lora_names(t, cfg)
    kohya = {n.replace(".", "_"): n for n in names}
    groups = {}
    for n, v in read_safetensors(path).items():
        for sfx, part in ((".lora_A.weight", "A"), (".lora_B.weight", "B"),
                          (".lora_down.weight", "A"), (".lora_up.weight", "B"), (".alpha", "alpha")):
            if n.endswith(sfx):
                groups.setdefault(n[: -len(sfx)], {})[part] = v
                break
        else:
            raise SystemExit(f"{path}: {n} is not a LoRA tensor")
    result = {}
    for module, g in groups.items():
        if module.startswith(("lora_te", "text_encoder")):
            continue
        m = module
        for p in ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer."):
            if m.startswith(p):
                m = m[len(p):]
        for p in ("lora_unet_", "lora_transformer_"):
            if m not in names and m.startswith(p) and m[len(p):] in kohya:
                m = kohya[m[len(p):]]
        if m not in names:
            raise SystemExit(f"{path}: {module} names no layer")
        parts, bfl_final = names[m]
        a, b = g["A"], g["B"]
        s = scale * (float(g["alpha"].reshape(-1)[0]) / a.shape[0] if "alpha" in g else 1.0)
        first = 0
        for part in parts:
            rows = t[part + ".weight"].shape[0]
            bs = b[first : first + rows]
            if bfl_final:  # (shift, scale) -> diffusers' (scale, shift)
                bs = torch.cat([bs[rows // 2 :], bs[: rows // 2]])
            result.setdefault(part, []).append((a, bs, s))
            first += rows
    return result


class Model:
    def __init__(self, path, quantize=None, q8=False, loras=()):
        self.quantized = set()  # diffusers names of block-quantized weights
        if os.path.isdir(path):
            self.t, meta = {}, {}
            for shard in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
                t, m = read_tensors(shard)
                self.t.update(t)
                meta = meta or m
            if "mflux_version" in meta or "quantization_level" in meta:
                self.t, self.cfg = read_mflux(path, meta, self.t)
            else:
                with open(os.path.join(path, "config.json")) as f:
                    self.cfg = json.load(f)
                self.t = apply_float8_scales(self.t)
        else:
            self.t, self.cfg, self.quantized = from_bfl(*read_single_file(path))
        if quantize:  # as hearth's quantize_bits: every matrix of whole 32-blocks
            for n, w in self.t.items():
                if w.dim() == 2 and w.shape[1] % 32 == 0:
                    self.t[n] = quantize_dequantize(w, quantize)
                    self.quantized.add(n)
        self.q8 = q8
        self.lora = {}
        for spec in loras:
            for n, paths in read_lora(spec, self.t, self.cfg).items():
                self.lora.setdefault(n, []).extend(paths)
        c = self.cfg
        self.heads = c["num_attention_heads"]
        self.hd = c["attention_head_dim"]
        self.axes = c.get("axes_dims_rope", [16, 56, 56])

    def lin(self, name, x):
        x_in = x
        if self.q8 and name + ".weight" in self.quantized:
            x = q8_activations(x)
        y = x @ self.t[name + ".weight"].T + self.t[name + ".bias"]
        for a, b, s in self.lora.get(name, []):  # the unrounded input
            y = y + s * ((x_in @ a.T) @ b.T)
        return y

    def mlp(self, base, a, b, x, act):
        return self.lin(base + b, act(self.lin(base + a, x)))

    def heads_of(self, x):
        return x.reshape(x.shape[0], self.heads, self.hd)

    def rope(self, x, ids):
        # x: [n, heads, hd]; each axis's slice as complex numbers.
        parts = []
        off = 0
        for a, d in enumerate(self.axes):
            sl = x[:, :, off : off + d].reshape(x.shape[0], self.heads, d // 2, 2)
            z = torch.complex(sl[..., 0], sl[..., 1])
            freqs = torch.tensor([10000.0 ** (-2 * i / d) for i in range(d // 2)],
                                 dtype=torch.float64)
            ang = ids[:, a : a + 1] * freqs[None, :]
            rot = torch.polar(torch.ones_like(ang), ang)[:, None, :]
            w = z * rot
            parts.append(torch.stack([w.real, w.imag], dim=-1).reshape(x.shape[0], self.heads, d))
            off += d
        return torch.cat(parts, dim=-1)

    def attention(self, q, k, v, ids):
        q = self.rope(q, ids).transpose(0, 1)
        k = self.rope(k, ids).transpose(0, 1)
        v = v.transpose(0, 1)
        p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.hd), dim=-1)
        o = (p @ v).transpose(0, 1)
        return o.reshape(o.shape[0], -1)

    def qkv(self, p, names, norms, y):
        q = rms(self.heads_of(self.lin(p + names[0], y)), self.t[p + norms[0] + ".weight"])
        k = rms(self.heads_of(self.lin(p + names[1], y)), self.t[p + norms[1] + ".weight"])
        v = self.heads_of(self.lin(p + names[2], y))
        return q, k, v

    def forward(self, image, img_ids, context, txt_ids, pooled, timestep, guidance):
        c = self.cfg
        temb = self.mlp("time_text_embed.timestep_embedder.", "linear_1", "linear_2",
                        sinus(1000.0 * timestep), silu)
        if c.get("guidance_embeds", False):
            temb = temb + self.mlp("time_text_embed.guidance_embedder.", "linear_1", "linear_2",
                                   sinus(1000.0 * guidance), silu)
        temb = temb + self.mlp("time_text_embed.text_embedder.", "linear_1", "linear_2", pooled,
                               silu)
        e = silu(temb)
        txt = self.lin("context_embedder", context)
        img = self.lin("x_embedder", image)
        nt = txt.shape[0]
        ids = torch.cat([txt_ids, img_ids])
        for layer in range(c["num_layers"]):
            p = f"transformer_blocks.{layer}."
            mi = self.lin(p + "norm1.linear", e).chunk(6)
            mt = self.lin(p + "norm1_context.linear", e).chunk(6)
            yi = ln(img) * (1 + mi[1]) + mi[0]
            yt = ln(txt) * (1 + mt[1]) + mt[0]
            qi, ki, vi = self.qkv(p + "attn.", ["to_q", "to_k", "to_v"], ["norm_q", "norm_k"], yi)
            qt, kt, vt = self.qkv(p + "attn.", ["add_q_proj", "add_k_proj", "add_v_proj"],
                                  ["norm_added_q", "norm_added_k"], yt)
            a = self.attention(torch.cat([qt, qi]), torch.cat([kt, ki]), torch.cat([vt, vi]), ids)
            img = img + mi[2] * self.lin(p + "attn.to_out.0", a[nt:])
            txt = txt + mt[2] * self.lin(p + "attn.to_add_out", a[:nt])
            img = img + mi[5] * self.mlp(p + "ff.", "net.0.proj", "net.2",
                                         ln(img) * (1 + mi[4]) + mi[3], gelu_tanh)
            txt = txt + mt[5] * self.mlp(p + "ff_context.", "net.0.proj", "net.2",
                                         ln(txt) * (1 + mt[4]) + mt[3], gelu_tanh)
        x = torch.cat([txt, img])
        for layer in range(c["num_single_layers"]):
            p = f"single_transformer_blocks.{layer}."
            m = self.lin(p + "norm.linear", e).chunk(3)
            y = ln(x) * (1 + m[1]) + m[0]
            q, k, v = self.qkv(p + "attn.", ["to_q", "to_k", "to_v"], ["norm_q", "norm_k"], y)
            a = self.attention(q, k, v, ids)
            f = gelu_tanh(self.lin(p + "proj_mlp", y))
            x = x + m[2] * self.lin(p + "proj_out", torch.cat([a, f], dim=-1))
        scale, shift = self.lin("norm_out.linear", e).chunk(2)
        return self.lin("proj_out", ln(x[nt:]) * (1 + scale) + shift)


def sigmas(s):
    n = s["steps"]
    sig = np.linspace(1.0, 1.0 / n, n)
    if s["dynamic"]:
        m = (s["max_shift"] - s["base_shift"]) / (s["max_seq"] - s["base_seq"])
        mu = s["tokens"] * m + (s["base_shift"] - m * s["base_seq"])
        sig = math.exp(mu) / (math.exp(mu) + (1 / sig - 1))
    else:
        sig = s["shift"] * sig / (1 + (s["shift"] - 1) * sig)
    return list(sig) + [0.0]


def pipeline(folder, inp):
    import text_encoder_reference as te
    import vae_reference as vr

    def encoder(sub):
        with open(os.path.join(folder, sub, "config.json")) as f:
            cfg = json.load(f)
        return cfg, read_safetensors(os.path.join(folder, sub, "model.safetensors"))

    with torch.no_grad():
        _, pooled = te.clip_text(*encoder("text_encoder"), inp["clip_ids"])
        context = te.t5_encoder(*encoder("text_encoder_2"), inp["t5_ids"])
        noise = torch.from_numpy(np.load(inp["noise"]).astype(np.float64))
        c, h, w = noise.shape
        with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as f:
            sc = json.load(f)
        steps = inp["steps"]
        sig = sigmas({"steps": steps, "tokens": (h // 2) * (w // 2),
                      "dynamic": sc.get("use_dynamic_shifting", False),
                      "shift": sc.get("shift", 1.0), "base_shift": sc.get("base_shift", 0.5),
                      "max_shift": sc.get("max_shift", 1.15),
                      "base_seq": sc.get("base_image_seq_len", 256),
                      "max_seq": sc.get("max_image_seq_len", 4096)})
        vae = vr.KL(os.path.join(folder, "vae"))
        x = noise
        if inp.get("init_image"):
            init = min(steps * inp["strength"], steps)
            t_start = int(max(steps - init, 0))
            sig = sig[t_start:]
            img = torch.from_numpy(np.load(inp["init_image"]).astype(np.float64))
            z = vae.encode(img.permute(2, 0, 1)[None])[0]
            x = sig[0] * noise + (1 - sig[0]) * z
        packed = x.reshape(c, h // 2, 2, w // 2, 2).permute(1, 3, 0, 2, 4).reshape(-1, c * 4)
        img_ids = torch.tensor([[0, r, q] for r in range(h // 2) for q in range(w // 2)],
                               dtype=torch.float64)
        txt_ids = torch.zeros(len(inp["t5_ids"]), 3, dtype=torch.float64)
        m = Model(os.path.join(folder, "transformer"))
        for i in range(len(sig) - 1):
            v = m.forward(packed, img_ids, context, txt_ids, pooled, sig[i], inp.get("guidance"))
            packed = packed + (sig[i + 1] - sig[i]) * v
        lat = packed.reshape(h // 2, w // 2, c, 2, 2).permute(2, 0, 3, 1, 4).reshape(c, h, w)
        out = vae.decode(lat[None])[0].permute(1, 2, 0)  # HWC in about [-1, 1]
        u8 = np.round(np.clip(out.numpy() / 2 + 0.5, 0, 1) * 255).astype(np.uint8)
    return {"image": u8.reshape(-1).tolist(), "sigmas": [float(v) for v in sig]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--input")
    ap.add_argument("--sigmas")
    ap.add_argument("--pipeline")
    ap.add_argument("--q8-activations", action="store_true",
                    help="also velocity_q8: the inputs of block-quantized products rounded as "
                         "hearth rounds them")
    ap.add_argument("--quantize", choices=["q4_0", "q8_0"],
                    help="quantize every matrix of whole 32-blocks first (hearth's --quantize)")
    ap.add_argument("--lora", action="append", default=[],
                    help="PATH[:SCALE] of a LoRA adapter (several allowed)")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    if args.pipeline:
        with open(args.input) as f:
            out = pipeline(args.pipeline, json.load(f))
    elif args.sigmas:
        with open(args.sigmas) as f:
            cases = json.load(f)["cases"]
        out = {"sigmas": [[float(v) for v in sigmas(c)] for c in cases]}
    else:
        m = Model(args.model, args.quantize, args.q8_activations, args.lora)
        with open(args.input) as f:
            inp = json.load(f)
        c = m.cfg

        def t(call, name, cols):
            return torch.tensor(call[name], dtype=torch.float64).reshape(-1, cols)

        out = {"velocity": []}
        if args.q8_activations:
            out["velocity_q8"] = []
        with torch.no_grad():
            for call in inp["calls"]:
                for key in out:
                    m.q8 = key == "velocity_q8"
                    v = m.forward(t(call, "image", c["in_channels"]), t(call, "img_ids", 3),
                                  t(call, "context", c["joint_attention_dim"]),
                                  t(call, "txt_ids", 3),
                                  torch.tensor(call["pooled"], dtype=torch.float64),
                                  call["timestep"], call.get("guidance"))
                    out[key].append(v.reshape(-1).tolist())
    with open(args.output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
