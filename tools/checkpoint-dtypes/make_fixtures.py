"""Writes small zip-format `torch.save` state dicts whose weights are not floating point, for the
dtype checks of the model crates' checkpoint loaders.

Each file takes a few tensors, under their real names and shapes, from a tiny checkpoint the crate
already commits (itself written by torch), and stores:
- one float32 weight relabelled as int32 with `Tensor.view(torch.int32)`: the same bytes under an
  integer dtype, which is what a header-edited or mis-exported checkpoint holds;
- one float32 weight converted to int64 (`.long()`), as `model.long()` would save it;
- one float32 weight left as is (must not be reported);
- where the model really has integer buffers that the loaders skip (`position_ids`,
  `num_batches_tracked`), one of them, unchanged (must not be reported).
The files lack the model's other tensors on purpose: the loaders report missing keys and wrong
dtypes together, so the tests check that the dtype problems name exactly the two relabelled
tensors.

Usage (from the repository root; defaults reproduce the committed files):
    python tools/checkpoint-dtypes/make_fixtures.py
"""

import torch

# (source checkpoint, output, int32-relabelled key, int64 key, float key, integer buffer or None)
CASES = [
    (
        "crates/vdvae/tests/fixtures/tiny-weights-module.th",
        "crates/vdvae/tests/fixtures/int-weights-module.th",
        "module.encoder.in_conv.weight",
        "module.decoder.gain",
        "module.decoder.bias",
        None,
    ),
    (
        "crates/clip/tests/fixtures/model_tiny/pytorch_model.bin",
        "crates/clip/tests/fixtures/int_weights.bin",
        "vision_model.embeddings.patch_embedding.weight",
        "visual_projection.weight",
        "vision_model.embeddings.class_embedding",
        "vision_model.embeddings.position_ids",
    ),
    (
        "crates/versatile-diffusion/tests/fixtures/tiny/vae/diffusion_pytorch_model.bin",
        "crates/versatile-diffusion/tests/fixtures/int_vae_weights.bin",
        "encoder.conv_in.weight",
        "decoder.conv_out.bias",
        "encoder.conv_in.bias",
        None,
    ),
    (
        "crates/metrics/tests/fixtures/tiny_zip.pth",
        "crates/metrics/tests/fixtures/tiny_int.pth",
        "module.conv.weight",
        "module.bn.running_var",
        "module.conv.bias",
        "module.bn.num_batches_tracked",
    ),
]


def main():
    for source, out, as_int32, as_int64, kept, buffer in CASES:
        sd = torch.load(source, map_location="cpu", weights_only=True)
        new = {
            as_int32: sd[as_int32].contiguous().view(torch.int32),
            as_int64: sd[as_int64].long(),
            kept: sd[kept],
        }
        if buffer is not None:
            assert not sd[buffer].is_floating_point(), buffer
            new[buffer] = sd[buffer]
        torch.save(new, out)
        print(out, {k: str(v.dtype) for k, v in new.items()})


if __name__ == "__main__":
    main()
