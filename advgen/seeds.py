"""Named random streams: a seed for (run seed, stream name, index...), kept apart by construction.

Every random draw of a training stage is seeded by `derive(seed, "rollout", step)` and the like, so two
streams never share draws whatever the seed and the step, and a new stream needs only a new name.
"""
import hashlib

import torch


def derive(seed: int, name: str, *index: int) -> int:
    """A 63-bit seed from a hash of (seed, name, index...): independent for every distinct tuple."""
    key = "/".join([str(int(seed)), name, *(str(int(i)) for i in index)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def generator(seed: int, name: str, *index: int, device="cpu") -> torch.Generator:
    """A torch.Generator for the stream; the global RNG is untouched."""
    return torch.Generator(device=device).manual_seed(derive(seed, name, *index))
