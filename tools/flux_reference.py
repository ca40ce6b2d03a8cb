#!/usr/bin/python3
"""Independent reference for hearth's FLUX.1 transformer and sampler schedule, on Debian's
python3-torch, in float64.

Written from the architecture description of FLUX.1 (Black Forest Labs' flux repository's model
description, as diffusers' FluxTransformer2DModel lays out the weights), not from hearth's C++
and without diffusers. Reads a diffusers transformer/ folder (config.json, the safetensors shards,
parsed by text_encoder_reference.read_safetensors).

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

Usage: flux_reference.py --model DIR --input in.json --output out.json
  in.json: {"calls": [{"image", "img_ids", "context", "txt_ids", "pooled", "timestep",
  "guidance"?}, ...]} (flattened arrays) -> {"velocity": [[...], ...]}
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
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


class Model:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        self.t = {}
        for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
            self.t.update(read_safetensors(path))
        c = self.cfg
        self.heads = c["num_attention_heads"]
        self.hd = c["attention_head_dim"]
        self.axes = c.get("axes_dims_rope", [16, 56, 56])

    def lin(self, name, x):
        return x @ self.t[name + ".weight"].T + self.t[name + ".bias"]

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
        m = Model(args.model)
        with open(args.input) as f:
            inp = json.load(f)
        c = m.cfg

        def t(call, name, cols):
            return torch.tensor(call[name], dtype=torch.float64).reshape(-1, cols)

        out = {"velocity": []}
        with torch.no_grad():
            for call in inp["calls"]:
                v = m.forward(t(call, "image", c["in_channels"]), t(call, "img_ids", 3),
                              t(call, "context", c["joint_attention_dim"]),
                              t(call, "txt_ids", 3),
                              torch.tensor(call["pooled"], dtype=torch.float64),
                              call["timestep"], call.get("guidance"))
                out["velocity"].append(v.reshape(-1).tolist())
    with open(args.output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
