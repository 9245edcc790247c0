"""Safe reading of user weights files: safetensors, or torch.load(weights_only=True). Never a full unpickle."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from usjepa.errors import CheckpointError

CONVERT_HINT = (
    "convert it once, in an environment you trust: unpickle it there, take its state dict "
    "(often under 'state_dict' or 'model'), and write it with safetensors.torch.save_file(state_dict, "
    "'OUT.safetensors')"
)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_weights(path: str | Path, expected: str = "a weights file", convert: str | None = None) -> dict:
    """Read a state dict (or a checkpoint dict of tensors and plain values) without executing code.

    ``convert``: the conversion to suggest when a file needs full unpickling (default: the generic hint).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: {expected} not found")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: file is empty (0 bytes); expected {expected}")
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{p}: not a valid safetensors file ({e}); it may be truncated") from None
    what = sniff(p)
    if what is not None:
        raise CheckpointError(
            f"{p}: this is {what}, not {expected} (expected a .safetensors file or a PyTorch "
            f"checkpoint written by torch.save)"
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{p}: refused: this file needs full unpickling, which can execute code "
            f"({str(e).splitlines()[0]}). Use safetensors, or {convert or CONVERT_HINT}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"{p}: cannot read {expected}: it is truncated or not a PyTorch file ({e})") from None


def check_finite(sd: dict, path: str | Path) -> dict:
    """``sd`` unchanged; a CheckpointError naming the file and the first tensors when any weight is NaN or infinite."""
    bad = [k for k, v in sd.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[:3]}); "
            "the run diverged before this checkpoint: use an earlier one, or retrain with a lower optim.lr"
        )
    return sd


SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"BM": "a BMP image",
    b"%PDF": "a PDF",
}


def sniff(p: Path) -> str | None:
    """What ``p`` looks like when it is plainly not a weights file (an image, text such as CSV or JSON), else None."""
    with open(p, "rb") as f:
        head = f.read(512)
    for magic, what in SIGNATURES.items():
        if head.startswith(magic):
            return what
    if head[:1] in (b"\x80", b"P"):  # a pickle protocol byte, or a zip archive (PK): torch.save's formats
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not a character cut at the end of the 512 bytes
            return None
        text = head[: e.start].decode("utf-8")
    return (
        "a text file (CSV, JSON or similar)" if text and all(c.isprintable() or c in "\r\n\t" for c in text) else None
    )


def state_dict_from(obj: dict, path: str | Path) -> dict:
    """The tensor state dict inside a loaded file (plain, or under 'state_dict'/'model'/'teacher')."""
    for key in ("state_dict", "model", "teacher", "encoder"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors; expected a model state dict")
    return tensors
