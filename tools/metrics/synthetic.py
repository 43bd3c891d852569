"""Deterministic synthetic weights and test images shared with the Rust crate `metrics`.

Every value is a pure function of a name (or seed) and an index, computed with integer hashing
(FNV-1a 64 of the name, SplitMix64 of the index) and float64 arithmetic, so that Rust
(`metrics::networks::synthetic`, `crates/metrics/tests/common/mod.rs`) reproduces the same float32
weights and uint8 images bit for bit without storing them.
"""

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def splitmix64(seed: int, index: np.ndarray) -> np.ndarray:
    """SplitMix64 outputs number `index` (0-based, uint64 array) of the stream seeded with `seed`."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (index.astype(np.uint64) + np.uint64(1)) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def symmetric_uniform(seed: int, count: int) -> np.ndarray:
    z = splitmix64(seed, np.arange(count, dtype=np.uint64))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53)) * 2.0 - 1.0


def parameter_values(name: str, shape) -> np.ndarray:
    """Same rule as `metrics::networks::synthetic::parameter_values`."""
    count = int(np.prod(shape)) if len(shape) else 1
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        offset, scale = 1.0, 0.5
    elif leaf == "running_mean":
        offset, scale = 0.0, 0.1
    elif leaf == "weight" and len(shape) == 1:
        offset, scale = 1.0, 0.1
    elif leaf == "bias":
        offset, scale = 0.0, 0.1
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        offset, scale = 0.0, float(np.sqrt(6.0 / max(fan_in, 1)))
    u = symmetric_uniform(fnv1a64(name), count)
    return (offset + u * scale).astype(np.float32).reshape(shape)


def fill_model(model, prefix: str = "") -> None:
    """Overwrites every parameter and float buffer of a torch module with its synthetic value."""
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = parameter_values(prefix + name, tuple(tensor.shape))
            tensor.copy_(torch.from_numpy(values))


def structured_image(seed: int, width: int, height: int) -> np.ndarray:
    """An integer-defined test image: gradients, a checkerboard and random 16x16 blocks."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    y, x, c = (a.astype(np.int64) for a in (y, x, c))
    block = ((y >> 4) * 1000 + (x >> 4)) * 3 + c
    rnd = (splitmix64(seed, block.astype(np.uint64).ravel()) >> np.uint64(58)).astype(np.int64).reshape(y.shape)
    v = x * (c + 2) + y * (4 - c) + 64 * (((x >> 3) + (y >> 3)) & 1) + rnd * 4
    return (v % 256).astype(np.uint8)


def noise_image(seed: int, width: int, height: int) -> np.ndarray:
    z = splitmix64(seed, np.arange(width * height * 3, dtype=np.uint64))
    return (z >> np.uint64(56)).astype(np.uint8).reshape(height, width, 3)


def reconstruction_of(seed: int, gt_width: int, gt_height: int, width: int, height: int, noise: int) -> np.ndarray:
    """A degraded copy of `structured_image(seed, gt_width, gt_height)` at another size:
    nearest-neighbour resampled (integer index maps) plus uniform noise in [-noise, noise)."""
    gt = structured_image(seed, gt_width, gt_height).astype(np.int64)
    ys = (np.arange(height) * gt_height) // height
    xs = (np.arange(width) * gt_width) // width
    base = gt[ys][:, xs]
    if noise > 0:
        z = splitmix64(seed ^ 0x5EED, np.arange(width * height * 3, dtype=np.uint64))
        delta = (z % np.uint64(2 * noise)).astype(np.int64).reshape(height, width, 3) - noise
        base = base + delta
    return np.clip(base, 0, 255).astype(np.uint8)


def bytes_fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    arr = np.frombuffer(data, dtype=np.uint8)
    # Plain loop is slow for big arrays; process in Python ints but vectorised per byte is not possible
    # for FNV, so this is only used on small/medium images.
    for b in arr.tolist():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return f"{h:016x}"
