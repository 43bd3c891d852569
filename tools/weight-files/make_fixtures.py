"""Legacy (pre-1.6, non-zip) torch.save fixtures for the `weight-files` crate, and the legacy twin of
the VDVAE crate's zip fixture.

    PY=$(tools/setup.sh); $PY tools/weight-files/make_fixtures.py

Writes into crates/weight-files/tests/fixtures/:
- legacy_views.pt: a flat state dict (DataParallel `module.` prefix) saved with
  `_use_new_zipfile_serialization=False`: f32, f16, bf16, f64, int64 (a BatchNorm's
  num_batches_tracked, 0-d), bool, an nn.Parameter, and views: a transposed weight sharing its
  storage with the original, a slice with a storage offset, a column-strided view.
- legacy_nested.pt: {'state_dict': ..., 'epoch': ..., 'optimizer': ...} as training scripts save.
- legacy_protocol4.pt: legacy format with pickle_protocol=4 (FRAME, SHORT_BINUNICODE, MEMOIZE).
- legacy_expected.safetensors: every tensor of legacy_views.pt, contiguous, under the same names
  (written by safetensors from the tensors torch.load reads back), for exact comparison.
- legacy_nested_expected.safetensors: the same for the state dict inside legacy_nested.pt.
and crates/vdvae/tests/fixtures/tiny-weights-module-legacy.th: tiny-weights-module.th re-saved legacy.
"""

import collections
import os

import torch
from safetensors.torch import save_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = os.path.join(root, "crates", "weight-files", "tests", "fixtures")


def legacy_save(obj, path, **kw):
    torch.save(obj, path, _use_new_zipfile_serialization=False, **kw)


def expected(path, legacy_path, unwrap=None):
    """The tensors torch itself reads back from the legacy file, contiguous, as safetensors."""
    state = torch.load(legacy_path, map_location="cpu", weights_only=True)
    if unwrap:
        state = state[unwrap]
    save_file({k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}, path)


def main():
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    base = torch.randn(4, 5, generator=g)
    line = torch.arange(20, dtype=torch.float64) * 0.25 - 2.0
    grid = torch.randn(3, 6, generator=g)
    sd = collections.OrderedDict()
    sd["module.conv.weight"] = torch.randn(2, 3, 2, 2, generator=g)
    sd["module.fc.weight"] = base
    sd["module.fc.weight_t"] = base.t()  # same storage, strides (1, 5)
    sd["module.slice"] = line[5:11]  # storage offset 5 into 20 elements
    sd["module.columns"] = grid[:, 1::2]  # strides (6, 2), offset 1
    sd["module.half"] = torch.randn(2, 3, generator=g).half()
    sd["module.bf16"] = torch.randn(3, 2, generator=g).to(torch.bfloat16).t()
    sd["module.bn.running_var"] = torch.rand(3, generator=g) + 0.5
    sd["module.bn.num_batches_tracked"] = torch.tensor(123456789012, dtype=torch.int64)
    sd["module.index"] = torch.tensor([[-3, 2**40], [7, -(2**50)]], dtype=torch.int64)
    sd["module.mask"] = torch.tensor([True, False, True])
    sd["module.param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["module.empty"] = torch.zeros(0, 3)
    legacy_save(sd, os.path.join(out, "legacy_views.pt"))
    expected(os.path.join(out, "legacy_expected.safetensors"), os.path.join(out, "legacy_views.pt"))
    legacy_save(sd, os.path.join(out, "legacy_protocol4.pt"), pickle_protocol=4)

    inner = collections.OrderedDict()
    inner["layer.weight"] = torch.randn(3, 2, generator=g)
    inner["layer.bias"] = inner["layer.weight"][:, 0]  # a view of the weight's storage
    inner["bn.num_batches_tracked"] = torch.tensor(5)
    momentum = torch.randn(3, 2, generator=g)
    nested = {
        "epoch": 3,
        "arch": "tiny",
        "optimizer": {"state": {0: {"momentum_buffer": momentum}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "state_dict": inner,
    }
    legacy_save(nested, os.path.join(out, "legacy_nested.pt"))
    expected(os.path.join(out, "legacy_nested_expected.safetensors"), os.path.join(out, "legacy_nested.pt"),
             unwrap="state_dict")

    vdvae = os.path.join(root, "crates", "vdvae", "tests", "fixtures")
    sd = torch.load(os.path.join(vdvae, "tiny-weights-module.th"), map_location="cpu", weights_only=True)
    legacy_save(sd, os.path.join(vdvae, "tiny-weights-module-legacy.th"))
    print("torch", torch.__version__, "fixtures written")


if __name__ == "__main__":
    main()
