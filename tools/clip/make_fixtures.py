#!/usr/bin/env python
"""Writes the parity fixtures of the `clip` crate with the reference implementation (transformers + Pillow).

Three kinds of fixture, each in its own folder under --out (default crates/clip/tests/fixtures):

* ``model_<name>/``: a CLIPModel at the tiny configuration given on the command line, random weights
  (layer norms and biases perturbed too, so that no parameter is at its neutral value), saved as
  ``model.safetensors`` + ``config.json`` (the CLIPModel layout), the same weights as
  ``pytorch_model.bin`` (with a legacy int64 ``position_ids`` buffer that loaders must ignore), the
  ``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection`` layouts in ``image_encoder/`` and
  ``text_encoder/`` (as in shi-labs/versatile-diffusion), inputs and expected outputs in ``io.safetensors``.
* ``tokenizer/``: ids from transformers' ``CLIPTokenizer`` built from the real OpenAI vocabulary
  (``bpe_simple_vocab_16e6.txt.gz``, converted to vocab.json + merges.txt exactly as OpenAI's
  ``SimpleTokenizer`` builds its table) on >= 200 varied captions, and from a small vocabulary
  (its first merges) written as vocab.json + merges.txt, on the same captions.
* ``preprocess/``: u8 RGB images (PNG), Pillow's bicubic shortest-side-224 resize of each, and
  ``CLIPImageProcessorPil`` pixel values for one of them.
* ``manifest_vit_l14.json``: parameter names and shapes of transformers' CLIPModel,
  CLIPVisionModelWithProjection and CLIPTextModelWithProjection at the ViT-L/14 configuration
  (built on the meta device, nothing allocated), and that configuration as ``vit_l14_config.json``.

Run from the repository root, e.g.:
    python tools/clip/make_fixtures.py --name tiny --vision-hidden 32 --vision-layers 2 ...
See crates/clip/tests/fixtures/README.md for the exact commands used.
"""

import argparse
import gzip
import json
import os
import random

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

VIT_L14 = {
    "projection_dim": 768,
    "logit_scale_init_value": 2.6592,
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
        "bos_token_id": 0,
        "pad_token_id": 1,
        "eos_token_id": 2,
    },
    "vision_config": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
    },
}


def bytes_to_unicode():
    """OpenAI CLIP / GPT-2 byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def openai_vocab_and_merges(bpe_gz, n_merges=49152 - 256 - 2):
    """Vocabulary and merges as OpenAI's SimpleTokenizer builds them from bpe_simple_vocab_16e6.txt.gz."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : n_merges + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def write_hf_vocab(folder, vocab, merges):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def captions(seed, n_random):
    """Hand-written edge cases plus seeded random COCO-like captions."""
    fixed = [
        "",
        "a",
        "A man riding a wave on top of a surfboard.",
        "Two dogs playing in the snow!!!",
        "It's a cat; it's NOT a dog... or is it?",
        "They're here, we've gone, I'm done, you'll see, he'd know",
        "The year 1999 had 365 days, 3.14159 is pi and 1,000,000 is a million.",
        "Price: $12.50 (incl. 20% VAT) -- #deal @shop",
        "email me at someone@example.com or visit https://example.org/a?b=c&d=e",
        "Café crème brûlée à la française, naïve façade",
        "Straße, Œuvre, Ærø, Ångström",
        "e\u0301 versus \u00e9 (combining accent vs precomposed)",
        "日本語のキャプション、東京の夜景",
        "中文字幕：一只猫坐在桌子上",
        "한국어 문장입니다",
        "Ελληνικά γράμματα και Кириллица текст",
        "مرحبا بالعالم",
        "emoji 😀🐶🍕 and flags 🇫🇷 and ♥ ★",
        "full-width ＡＢＣ１２３ and ligature ﬁ",
        "tabs\tand\nnewlines\r\n  and   many    spaces",
        "   leading and trailing spaces   ",
        "HTML &amp; entities &lt;b&gt; and &quot;quotes&quot;",
        "curly ‘quotes’ and “double quotes” — em dash – en dash",
        "<|startoftext|>special tokens<|endoftext|> inside text",
        "CamelCaseWords and snake_case_words and kebab-case-words",
        "a.b.c,d;e:f!g?h",
        "!!!???...,,,;;;",
        "0123456789 9876543210",
        "x" * 300,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "A " + "very " * 100 + "long caption that goes past seventy-seven tokens.",
        " ".join(str(i) for i in range(120)),
        "MIXED case TeXt With ODD capitalisation",
        "o'clock, rock'n'roll, don't, won't, can't, y'all",
        "'s 't 're 've 'm 'll 'd at the start",
        "zero\u200bwidth\u200cjoiners\u200d and soft\u00adhyphen",
        "non-breaking\u00a0space and ideographic\u3000space",
        "math ∑ ∫ √ ≈ ≠ ∞ and arrows → ← ↑",
        "1st 2nd 3rd 4th 21st century",
        "Ⅻ roman numeral, ½ fraction, ² superscript",
    ]
    rng = random.Random(seed)
    subjects = ["a man", "A woman", "two children", "a dog", "Three cats", "an elephant", "a giraffe",
                "the train", "a red bus", "some people", "a plate of food", "a pizza", "a laptop", "an old clock",
                "a surfer", "a skateboarder", "a zebra", "a herd of sheep", "the kitchen", "a bathroom"]
    verbs = ["sitting on", "standing next to", "riding", "looking at", "eating", "holding", "flying over",
             "parked near", "walking across", "lying under", "jumping over", "covered in"]
    objects = ["a bench", "the beach", "a table", "a field of grass", "the street", "a snowy hill", "a kitchen counter",
               "a wooden fence", "the ocean", "a busy intersection", "a white plate", "a tall building"]
    extras = ["", ".", "!", "?", "...", " at night.", " in 2015.", ", 3 of them", " (blurry photo)", " - cute!",
              " near 5th Ave.", " with 10,000 lights", " — très joli", " 😀", " #nofilter", " & friends",
              " on a sunny day", "'s reflection", " ;-)", " \"quoted\""]
    out = list(fixed)
    for _ in range(n_random):
        parts = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects)]
        text = " ".join(parts) + rng.choice(extras)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.5 else text.title()
        if rng.random() < 0.25:
            text = text + " " + " ".join(rng.choice(objects) for _ in range(rng.randint(12, 30)))
        if rng.random() < 0.15:
            text = text.replace(" ", rng.choice(["  ", "\t", " \n "]))
        out.append(text)
    return out


def make_tokenizer_fixture(out_dir, seed, n_random, small_merges):
    folder = os.path.join(out_dir, "tokenizer")
    bpe_gz = os.path.join(folder, "bpe_simple_vocab_16e6.txt.gz")
    vocab, merges = openai_vocab_and_merges(bpe_gz)
    assert len(vocab) == 49408, len(vocab)
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    caps = captions(seed, n_random)
    tmp = os.path.join(out_dir, "_tmp_full_vocab")
    write_hf_vocab(tmp, vocab, merges)
    tok = CLIPTokenizer.from_pretrained(tmp)
    full = tok(caps, padding="max_length", max_length=77, truncation=True)["input_ids"]
    for f in ("vocab.json", "merges.txt"):
        os.remove(os.path.join(tmp, f))
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)

    small_vocab, small_m = openai_vocab_and_merges(bpe_gz, small_merges)
    small_dir = os.path.join(folder, "small_vocab")
    write_hf_vocab(small_dir, small_vocab, small_m)
    small_tok = CLIPTokenizer.from_pretrained(small_dir)
    small = small_tok(caps, padding="max_length", max_length=77, truncation=True)["input_ids"]
    # from_pretrained may drop tokenizer files of its own next to ours; keep only vocab.json + merges.txt
    for f in os.listdir(small_dir):
        if f not in ("vocab.json", "merges.txt"):
            os.remove(os.path.join(small_dir, f))
    # the same tokenizer as a single tokenizer.json (the fast-tokenizer file format)
    json_dir = os.path.join(folder, "small_tokenizer_json")
    os.makedirs(json_dir, exist_ok=True)
    small_tok.backend_tokenizer.save(os.path.join(json_dir, "tokenizer.json"), pretty=False)
    with open(os.path.join(folder, "expected_ids.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "generator": "tools/clip/make_fixtures.py (transformers CLIPTokenizer, padding=max_length, max_length=77, truncation=True)",
                "captions": caps,
                "full_vocab_ids": full,
                "small_vocab_ids": small,
                "small_vocab_bos": small_vocab["<|startoftext|>"],
                "small_vocab_eos": small_vocab["<|endoftext|>"],
            },
            f,
            ensure_ascii=False,
        )
    long = sum(1 for c in caps if len(tok(c)["input_ids"]) > 77)
    print(f"tokenizer: {len(caps)} captions ({long} longer than 77 tokens)")


def test_image(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.01, 0.15, size=2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 127.5 + 100 * np.sin(fx * xx + ph) * np.cos(fy * yy)
    # hard-edged blocks (test clamping of the cubic overshoot) and a little noise
    for _ in range(6):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[y0 : y0 + h // 5, x0 : x0 + w // 5] = rng.integers(0, 2, size=3) * 255
    img += rng.normal(0, 1.5, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_preprocess_fixture(out_dir, seed):
    folder = os.path.join(out_dir, "preprocess")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [(425, 425), (260, 300), (150, 97), (224, 224), (231, 225), (300, 400), (230, 229), (50, 60)]
    processor = CLIPImageProcessorPil()
    names = []
    for i, (h, w) in enumerate(sizes):
        arr = test_image(rng, h, w)
        name = f"image_{i}_{w}x{h}"
        Image.fromarray(arr).save(os.path.join(folder, name + ".png"))
        pil = Image.fromarray(arr)
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(224 * long / short)
        size = (224, new_long) if w <= h else (new_long, 224)
        resized = pil.resize(size, resample=Image.BICUBIC)
        resized.save(os.path.join(folder, name + "_resized.png"))
        names.append(name)
        if i == 0:
            pv = processor(images=pil, return_tensors="pt")["pixel_values"]
            save_file({"pixel_values": pv.contiguous()}, os.path.join(folder, name + "_pixel_values.safetensors"))
    with open(os.path.join(folder, "images.json"), "w") as f:
        json.dump({"images": names, "pixel_values_of": names[0], "pillow": Image.__version__}, f, indent=1)
    print(f"preprocess: {len(names)} images")


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            noise = torch.randn(p.shape, generator=g) * 0.05
            p.add_(noise)


def make_model_fixture(args):
    folder = os.path.join(args.out, f"model_{args.name}")
    os.makedirs(os.path.join(folder, "image_encoder"), exist_ok=True)
    os.makedirs(os.path.join(folder, "text_encoder"), exist_ok=True)
    torch.manual_seed(args.seed)
    vocab = args.vocab
    text_cfg = dict(
        vocab_size=vocab,
        hidden_size=args.text_hidden,
        intermediate_size=args.text_intermediate,
        num_hidden_layers=args.text_layers,
        num_attention_heads=args.text_heads,
        max_position_embeddings=args.max_positions,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=args.projection_dim,
        bos_token_id=0 if args.text_eos == 2 else vocab - 2,
        pad_token_id=1,
        eos_token_id=args.text_eos if args.text_eos >= 0 else vocab - 1,
    )
    vision_cfg = dict(
        hidden_size=args.vision_hidden,
        intermediate_size=args.vision_intermediate,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=args.vision_heads,
        image_size=args.image_size,
        patch_size=args.patch,
        num_channels=3,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=args.projection_dim,
    )
    config = CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=args.projection_dim)
    model = CLIPModel(config).eval()
    perturb(model, args.seed)
    model.save_pretrained(folder)
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    legacy = dict(state)
    legacy["vision_model.embeddings.position_ids"] = torch.arange(model.vision_model.embeddings.num_positions)[None]
    legacy["text_model.embeddings.position_ids"] = torch.arange(args.max_positions)[None]
    torch.save(legacy, os.path.join(folder, "pytorch_model.bin"))

    vis = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_cfg)).eval()
    vis.load_state_dict({k: v for k, v in state.items() if k.startswith("vision_model.") or k.startswith("visual_projection.")})
    vis.save_pretrained(os.path.join(folder, "image_encoder"))
    txt = CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)).eval()
    txt.load_state_dict({k: v for k, v in state.items() if k.startswith("text_model.") or k.startswith("text_projection.")})
    # the text encoder goes as a pytorch_model.bin, like the shi-labs/versatile-diffusion folders
    txt.save_pretrained(os.path.join(folder, "text_encoder"))
    tstate = {k: v.clone().contiguous() for k, v in txt.state_dict().items()}
    os.remove(os.path.join(folder, "text_encoder", "model.safetensors"))
    torch.save(tstate, os.path.join(folder, "text_encoder", "pytorch_model.bin"))

    # inputs
    g = torch.Generator().manual_seed(args.seed + 1)
    s = args.image_size
    pixel_values = torch.randn(2, 3, s, s, generator=g)
    L = args.max_positions
    bos, eos = (vocab - 2, vocab - 1)
    lengths = [3, L - 4, L + 5, 1]  # the third is cut: EOS is forced into the last slot, like truncation
    ids = torch.full((len(lengths), L), eos, dtype=torch.long)
    for r, n in enumerate(lengths):
        body = torch.randint(0, vocab - 2, (max(0, min(n, L - 2)),), generator=g)
        ids[r, 0] = bos
        ids[r, 1 : 1 + len(body)] = body
        ids[r, 1 + len(body)] = eos
    groups = torch.tensor([2, 1, 1], dtype=torch.long)  # captions per image for the averaged VD text embedding

    with torch.no_grad():
        vout = model.vision_model(pixel_values=pixel_values)
        image_embeds = model.visual_projection(vout.pooler_output)
        tout = model.text_model(input_ids=ids)
        text_embeds = model.text_projection(tout.pooler_output)
        # Versatile Diffusion (lib/model_zoo/clip.py FrozenCLIP.encode_vision / encode_text)
        z = model.vision_model.post_layernorm(vout.last_hidden_state)
        z = model.visual_projection(z)
        vd_vision = z / torch.norm(z[:, 0:1], dim=-1, keepdim=True)
        t = model.text_projection(tout.last_hidden_state)
        vd_text = t / torch.norm(text_embeds.unsqueeze(1), dim=-1, keepdim=True)
        # brain-diffuser cliptext_extract_features.py: mean over the captions of one image
        chunks = torch.split(vd_text, groups.tolist())
        vd_text_mean = torch.stack([c.mean(0) for c in chunks])
        # the separate VD encoders must give the same as the CLIPModel towers
        assert torch.allclose(vis(pixel_values=pixel_values).image_embeds, image_embeds, atol=1e-6)
        assert torch.allclose(txt(input_ids=ids).text_embeds, text_embeds, atol=1e-6)

    tensors = {
        "pixel_values": pixel_values,
        "input_ids": ids,
        "caption_groups": groups,
        "vision_last_hidden_state": vout.last_hidden_state,
        "vision_pooled": vout.pooler_output,
        "image_embeds": image_embeds,
        "text_last_hidden_state": tout.last_hidden_state,
        "text_pooled": tout.pooler_output,
        "text_embeds": text_embeds,
        "vd_vision": vd_vision,
        "vd_text": vd_text,
        "vd_text_mean": vd_text_mean,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "io.safetensors"))
    print(f"model_{args.name}: {sum(p.numel() for p in model.parameters())} parameters")


def make_e2e_fixture(args):
    """End to end as the reference encodes (VD FrozenCLIP.encode_vision / encode_text +
    cliptext_extract_features.py): u8 images through CLIPImageProcessorPil at the model's size,
    captions through CLIPTokenizer (the small vocabulary), the normalised VD sequences, the
    caption mean per image; also the unconditional inputs (grey 127 image, empty caption)."""
    folder = os.path.join(args.out, f"e2e_{args.name}")
    os.makedirs(folder, exist_ok=True)
    tok = CLIPTokenizer.from_pretrained(os.path.join(args.out, "tokenizer", "small_vocab"))
    vocab = len(tok.get_vocab())
    torch.manual_seed(args.seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=args.text_hidden, intermediate_size=args.text_intermediate,
                         num_hidden_layers=args.text_layers, num_attention_heads=args.text_heads,
                         max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=args.projection_dim,
                         bos_token_id=0, pad_token_id=1, eos_token_id=2),
        vision_config=dict(hidden_size=args.vision_hidden, intermediate_size=args.vision_intermediate,
                           num_hidden_layers=args.vision_layers, num_attention_heads=args.vision_heads,
                           image_size=args.image_size, patch_size=args.patch, hidden_act="quick_gelu",
                           projection_dim=args.projection_dim),
        projection_dim=args.projection_dim,
    )
    model = CLIPModel(config).eval()
    perturb(model, args.seed)
    model.save_pretrained(folder)
    pre = os.path.join(args.out, "preprocess")
    names = json.load(open(os.path.join(pre, "images.json")))["images"][:3]
    images = [Image.open(os.path.join(pre, n + ".png")).convert("RGB") for n in names]
    images.append(Image.fromarray(np.full((args.image_size, args.image_size, 3), 127, dtype=np.uint8)))
    processor = CLIPImageProcessorPil(size={"shortest_edge": args.image_size},
                                      crop_size={"height": args.image_size, "width": args.image_size})
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    caps = [["A man riding a wave on top of a surfboard.", "Two dogs playing in the snow!!!"],
            ["It's a cat; it's NOT a dog... or is it?"],
            ["A " + "very " * 100 + "long caption.", "Café crème", "0123456789"],
            [""]]
    flat = [c for group in caps for c in group]
    ids = tok(flat, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        z = model.visual_projection(model.vision_model.post_layernorm(model.vision_model(pixel_values=pixel_values).last_hidden_state))
        vd_vision = z / torch.norm(z[:, 0:1], dim=-1, keepdim=True)
        tout = model.text_model(input_ids=ids)
        t = model.text_projection(tout.last_hidden_state)
        vd_text = t / torch.norm(model.text_projection(tout.pooler_output).unsqueeze(1), dim=-1, keepdim=True)
        vd_text_mean = torch.stack([c.mean(0) for c in torch.split(vd_text, [len(g) for g in caps])])
    save_file({"vd_vision": vd_vision.contiguous(), "vd_text_mean": vd_text_mean.contiguous(), "input_ids": ids},
              os.path.join(folder, "e2e.safetensors"))
    with open(os.path.join(folder, "e2e.json"), "w", encoding="utf-8") as f:
        json.dump({"images": names, "grey_127_image_last": True, "captions_per_image": caps}, f, ensure_ascii=False, indent=1)
    print(f"e2e_{args.name}: {len(images)} images, {len(flat)} captions")


def make_manifest(out_dir):
    config = CLIPConfig(**VIT_L14)
    with open(os.path.join(out_dir, "vit_l14_config.json"), "w") as f:
        json.dump(VIT_L14, f, indent=1)
    manifest = {}
    with torch.device("meta"):
        for key, build in [
            ("CLIPModel", lambda: CLIPModel(config)),
            ("CLIPVisionModelWithProjection", lambda: CLIPVisionModelWithProjection(config.vision_config)),
            ("CLIPTextModelWithProjection", lambda: CLIPTextModelWithProjection(config.text_config)),
        ]:
            m = build()
            manifest[key] = {k: list(v.shape) for k, v in m.state_dict().items()}
    with open(os.path.join(out_dir, "manifest_vit_l14.json"), "w") as f:
        json.dump(manifest, f, indent=0, sort_keys=True)
    print("manifest:", {k: len(v) for k, v in manifest.items()})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="crates/clip/tests/fixtures")
    p.add_argument("--what", default="model", choices=["model", "tokenizer", "preprocess", "manifest", "e2e"])
    p.add_argument("--name", default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vision-hidden", type=int, default=32)
    p.add_argument("--vision-intermediate", type=int, default=64)
    p.add_argument("--vision-layers", type=int, default=2)
    p.add_argument("--vision-heads", type=int, default=4)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--text-hidden", type=int, default=24)
    p.add_argument("--text-intermediate", type=int, default=48)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--text-heads", type=int, default=3)
    p.add_argument("--vocab", type=int, default=99)
    p.add_argument("--max-positions", type=int, default=16)
    p.add_argument("--projection-dim", type=int, default=20)
    p.add_argument("--text-eos", type=int, default=2,
                   help="text_config.eos_token_id: 2 = legacy argmax pooling (as openai/clip-vit-large-patch14); -1 = vocab-1")
    p.add_argument("--captions", type=int, default=200, help="random captions added to the hand-written ones")
    p.add_argument("--small-merges", type=int, default=2000)
    args = p.parse_args()
    if args.what == "model":
        make_model_fixture(args)
    elif args.what == "tokenizer":
        make_tokenizer_fixture(args.out, args.seed, args.captions, args.small_merges)
    elif args.what == "preprocess":
        make_preprocess_fixture(args.out, args.seed)
    elif args.what == "e2e":
        make_e2e_fixture(args)
    else:
        make_manifest(args.out)


if __name__ == "__main__":
    main()
