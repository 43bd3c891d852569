"""Converts a PyTorch checkpoint (any torch.save format, including the legacy pre-1.6 pickles of
older torchvision and SwAV downloads) to a flat safetensors file that the Rust crate `metrics` loads.

Optional: the Rust crates read every torch.save format themselves (legacy pickles through the
`weight-files` crate). A safetensors copy is checked from its header alone, without reading the
weights, and is what the `tiny_legacy_converted.safetensors` test fixture is made with.

    python tools/metrics/convert_checkpoint.py alexnet-owt-7be5be79.pth alexnet.safetensors
    python tools/metrics/convert_checkpoint.py swav_800ep_pretrain.pth.tar swav.safetensors

Nested {"state_dict": ...} / {"model": ...} wrappers are unwrapped, DataParallel's "module." prefix
is stripped, non-tensor entries are dropped; names are otherwise kept (torchvision's).
"""

import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    state = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    tensors = {}
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[name[len("module."):] if name.startswith("module.") else name] = value.contiguous()
    save_file(tensors, dst)
    print(f"wrote {len(tensors)} tensors to {dst}")


if __name__ == "__main__":
    main()
