#!/usr/bin/python3
"""Independent torch reference (float64) for hearth's image autoencoders, written from the
architecture descriptions, not from hearth's code:

* kl: the AutoencoderKL of FLUX.1 in the diffusers layout (vae/config.json +
  diffusion_pytorch_model.safetensors): conv_in; down blocks of ResnetBlock2D (GroupNorm, SiLU,
  3x3 conv, twice; 1x1 conv_shortcut when the channels change; sum) with a stride-2 3x3 conv after
  zero padding (0, 1, 0, 1); a mid block (resnet, single-head self-attention over all pixels with
  GroupNorm, q/k/v/out linears and a residual, resnet); GroupNorm + SiLU + conv_out. The encoder's
  output is the mean and log-variance; the mean is used. The decoder mirrors it with
  layers_per_block + 1 resnets per up block and nearest 2x upsampling + 3x3 conv. Latents are
  scaled as the FLUX pipelines do: z = (mean - shift_factor) * scaling_factor, and decoded from
  z / scaling_factor + shift_factor.
* taesd: madebyollin/taesd's tiny autoencoder (its README and model description): Blocks of
  conv3x3-ReLU-conv3x3-ReLU-conv3x3 plus identity skip, then ReLU; TAEF2's pooled branch
  (1x1 conv to 4x channels, GroupNorm(4), ReLU, 1x1 conv, added to the block input); encoder with
  three stride-2 convs, decoder with tanh(x/3)*3 on its input and three nearest 2x upsamplings.

Inputs and outputs are .npy float32: latents [C, H, W], images [H, W, 3].

  vae_reference.py kl --model VAE_DIR (--decode LATENTS.npy | --encode IMAGE.npy) --out OUT.npy
  vae_reference.py taesd --encoder F --decoder F (--decode L.npy | --encode I.npy) --out OUT.npy
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from bert_reference import read_safetensors  # the same float64 reader

torch.set_default_dtype(torch.float64)


# ---- AutoencoderKL ----

class KL:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = read_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        self.groups = self.cfg.get("norm_num_groups", 32)
        self.eps = 1e-6

    def conv(self, name, x, stride=1, padding=1):
        return F.conv2d(x, self.w[name + ".weight"], self.w.get(name + ".bias"), stride=stride,
                        padding=padding)

    def norm(self, name, x):
        return F.group_norm(x, self.groups, self.w[name + ".weight"], self.w[name + ".bias"],
                            self.eps)

    def resnet(self, name, x):
        h = self.conv(name + ".conv1", F.silu(self.norm(name + ".norm1", x)))
        h = self.conv(name + ".conv2", F.silu(self.norm(name + ".norm2", h)))
        if name + ".conv_shortcut.weight" in self.w:
            x = self.conv(name + ".conv_shortcut", x, padding=0)
        return x + h

    def attention(self, name, x):
        b, c, hh, ww = x.shape
        h = self.norm(name + ".group_norm", x).reshape(b, c, hh * ww).transpose(1, 2)
        lin = lambda n, t: F.linear(t, self.w[name + n + ".weight"].reshape(c, c),
                                    self.w[name + n + ".bias"])
        q, k, v = lin(".to_q", h), lin(".to_k", h), lin(".to_v", h)
        p = torch.softmax(q @ k.transpose(1, 2) / np.sqrt(c), dim=-1)
        o = lin(".to_out.0", p @ v)
        return x + o.transpose(1, 2).reshape(b, c, hh, ww)

    def mid(self, part, h):
        h = self.resnet(part + ".mid_block.resnets.0", h)
        if self.cfg.get("mid_block_add_attention", True):
            h = self.attention(part + ".mid_block.attentions.0", h)
        return self.resnet(part + ".mid_block.resnets.1", h)

    def encode(self, image):
        n = len(self.cfg["block_out_channels"])
        h = self.conv("encoder.conv_in", image)
        for i in range(n):
            for j in range(self.cfg["layers_per_block"]):
                h = self.resnet(f"encoder.down_blocks.{i}.resnets.{j}", h)
            if i + 1 < n:
                h = self.conv(f"encoder.down_blocks.{i}.downsamplers.0.conv",
                              F.pad(h, (0, 1, 0, 1)), stride=2, padding=0)
        h = self.mid("encoder", h)
        h = self.conv("encoder.conv_out", F.silu(self.norm("encoder.conv_norm_out", h)))
        mean = h[:, : self.cfg["latent_channels"]]
        return (mean - self.cfg.get("shift_factor", 0.0)) * self.cfg["scaling_factor"]

    def decode(self, z):
        n = len(self.cfg["block_out_channels"])
        z = z / self.cfg["scaling_factor"] + self.cfg.get("shift_factor", 0.0)
        h = self.mid("decoder", self.conv("decoder.conv_in", z))
        for i in range(n):
            for j in range(self.cfg["layers_per_block"] + 1):
                h = self.resnet(f"decoder.up_blocks.{i}.resnets.{j}", h)
            if i + 1 < n:
                h = self.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv",
                              F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv("decoder.conv_out", F.silu(self.norm("decoder.conv_norm_out", h)))


# ---- TAESD ----

class Tiny:
    def __init__(self, encoder, decoder):
        self.e = read_safetensors(encoder) if encoder else None
        self.d = read_safetensors(decoder) if decoder else None

    @staticmethod
    def conv(w, name, x, stride=1):
        k = w[name + ".weight"]
        return F.conv2d(x, k, w.get(name + ".bias"), stride=stride, padding=k.shape[-1] // 2)

    def block(self, w, i, x):
        p = str(i)
        if p + ".pool.0.weight" in w:
            t = self.conv(w, p + ".pool.0", x)
            t = F.relu(F.group_norm(t, 4, w[p + ".pool.1.weight"], w[p + ".pool.1.bias"], 1e-5))
            x = x + self.conv(w, p + ".pool.3", t)
        h = F.relu(self.conv(w, p + ".conv.0", x))
        h = F.relu(self.conv(w, p + ".conv.2", h))
        return F.relu(self.conv(w, p + ".conv.4", h) + x)

    def encode(self, x):
        w = self.e
        h = self.block(w, 1, self.conv(w, "0", x))
        for i in (2, 6, 10):
            h = self.conv(w, str(i), h, stride=2)
            for j in (1, 2, 3):
                h = self.block(w, i + j, h)
        return self.conv(w, "14", h)

    def decode(self, z):
        w = self.d
        h = F.relu(self.conv(w, "1", torch.tanh(z / 3) * 3))
        for i in (3, 8, 13):
            for j in (0, 1, 2):
                h = self.block(w, i + j, h)
            h = self.conv(w, str(i + 4), F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv(w, "19", self.block(w, 18, h))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["kl", "taesd"])
    ap.add_argument("--model")
    ap.add_argument("--encoder")
    ap.add_argument("--decoder")
    ap.add_argument("--decode")
    ap.add_argument("--encode")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    net = KL(a.model) if a.kind == "kl" else Tiny(a.encoder, a.decoder)
    with torch.no_grad():
        if a.decode:
            z = torch.from_numpy(np.load(a.decode).astype(np.float64))[None]
            out = net.decode(z)[0].permute(1, 2, 0)  # HWC
        else:
            img = torch.from_numpy(np.load(a.encode).astype(np.float64))
            out = net.encode(img.permute(2, 0, 1)[None])[0]  # CHW
    np.save(a.out, out.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
