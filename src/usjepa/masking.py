"""Multi-block mask collator (I-JEPA semantics), with optional scan-region (USrc) conditioning.

Masks are drawn per image inside DataLoader workers, from a generator seeded by the item's seed,
so they are identical whatever the number of workers or ranks, and across a resume.

A collated batch holds
  image     [B, C, H, W] float
  ctx_idx   [B, Nc] long    patch indices seen by the student, in random order (padded or truncated)
  ctx_keep  [B, Nc] bool    False on padding
  tgt_idx   [B, Nt] long    patch indices to predict, all target blocks concatenated (padded)
  tgt_block [B, Nt] long    block id of each target token, -1 on padding
  tgt_keep  [B, Nt] bool    token counts in the loss (not padding; inside the scan region under USrc)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from usjepa.config import MaskConfig
from usjepa.errors import ConfigError


def patch_validity(scan_mask: torch.Tensor, patch: int) -> np.ndarray:
    """[gh*gw] bool: a patch is valid when at least half of its pixels lie in the scan region."""
    h, w = scan_mask.shape[-2:]
    m = scan_mask.reshape(h // patch, patch, w // patch, patch).float().mean(dim=(1, 3))
    return (m >= 0.5).flatten().numpy()


class MaskCollator:
    def __init__(self, cfg: MaskConfig, img_size: int, patch_size: int, kind: str = "multiblock"):
        """``kind``: "multiblock" (I-JEPA blocks) or "random" (MAE: ``random_ratio`` of patches masked)."""
        if img_size % patch_size:
            raise ConfigError(
                f"data.img_size: {img_size} is not a multiple of the patch size {patch_size} "
                "(model.patch_size, or the arch's own)"
            )
        self.cfg = cfg
        if kind not in ("multiblock", "random"):
            raise ValueError(f"mask kind must be 'multiblock' or 'random', got '{kind}'")
        self.kind = kind
        self.patch = patch_size
        self.g = img_size // patch_size
        self.n = self.g * self.g

    # ---- block geometry -------------------------------------------------------------------
    def _block_size(self, rng: np.random.Generator, scale, aspect) -> tuple[int, int]:
        s = rng.uniform(*scale)
        log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
        a = math.exp(rng.uniform(log_lo, log_hi))
        area = s * self.n
        h = max(1, min(self.g, round(math.sqrt(area * a))))
        w = max(1, min(self.g, round(math.sqrt(area / a))))
        return h, w

    def _block(self, rng, h, w, valid) -> np.ndarray:
        """A block at a random position; under USrc, rejection-sampled to hold >= tau valid patches."""
        best, best_frac = None, -1.0
        for _ in range(self.cfg.max_tries if valid is not None else 1):
            top = rng.integers(0, self.g - h + 1)
            left = rng.integers(0, self.g - w + 1)
            m = np.zeros((self.g, self.g), bool)
            m[top : top + h, left : left + w] = True
            m = m.flatten()
            if valid is None:
                return m
            frac = valid[m].mean()
            if frac >= self.cfg.usrc_tau:
                return m
            if frac > best_frac:
                best, best_frac = m, frac
        return best

    # ---- per-image masks ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, valid: np.ndarray | None = None):
        """(context indices, list of target-block index arrays) for one image."""
        if self.kind == "random":
            pool = np.flatnonzero(valid) if valid is not None else np.arange(self.n)
            perm = rng.permutation(pool)
            n_keep = max(1, round(len(pool) * (1 - self.cfg.random_ratio)))
            return np.sort(perm[:n_keep]), [np.sort(perm[n_keep:])]
        c = self.cfg
        for _ in range(c.max_tries):
            targets = [
                self._block(rng, *self._block_size(rng, c.tgt_scale, c.tgt_aspect), valid) for _ in range(c.n_targets)
            ]
            ctx = self._block(rng, *self._block_size(rng, c.ctx_scale, c.ctx_aspect), valid)
            for t in targets:
                ctx &= ~t
            if valid is not None:
                ctx &= valid
            if ctx.sum() >= c.min_keep:
                break
        return np.flatnonzero(ctx), [np.flatnonzero(t) for t in targets]

    # ---- collation ------------------------------------------------------------------------
    def __call__(self, items: list[dict]) -> dict:
        masks, valids = [], []
        for it in items:
            valid = patch_validity(it["scan_mask"], self.patch) if self.cfg.usrc else None
            if valid is not None and valid.sum() < self.cfg.min_keep:
                valid = None  # an (almost) empty scan region: fall back to the whole image
            # Each image's masks depend only on its own seed, whatever batch or rank it lands in. The random
            # order makes truncation keep a random subset (I-JEPA keeps the top rows of every block).
            rng = np.random.default_rng(int(it["seed"]))
            ctx, targets = self.sample(rng, valid)
            masks.append((rng.permutation(ctx), [rng.permutation(t) for t in targets]))
            valids.append(valid)
        batch = {
            "image": torch.stack([it["image"] for it in items]),
            "scan_mask": torch.stack([it["scan_mask"] for it in items]),
        }
        if "label" in items[0]:
            batch["label"] = torch.tensor([int(it["label"]) for it in items])
        batch.update(self._pack(masks, valids))
        return batch

    def _pack(self, masks, valids) -> dict:
        trunc = self.cfg.pad_mode == "truncate"
        ctx = [m[0] for m in masks]
        n_blocks = len(masks[0][1])
        # Truncate: every image keeps a random subset the size of the batch's shortest context, and of the
        # shortest block per block index.
        if trunc:
            nc = min(len(c) for c in ctx)
            ctx = [c[:nc] for c in ctx]
            lens = [min(len(m[1][j]) for m in masks) for j in range(n_blocks)]
            masks = [(c, [t[: lens[j]] for j, t in enumerate(m[1])]) for c, m in zip(ctx, masks)]
        tgt = [np.concatenate(m[1]) for m in masks]
        blk = [np.concatenate([np.full(len(t), j) for j, t in enumerate(m[1])]) for m in masks]
        b, nc, nt = len(masks), max(len(c) for c in ctx), max(len(t) for t in tgt)
        out = {
            "ctx_idx": torch.zeros(b, nc, dtype=torch.long),
            "ctx_keep": torch.zeros(b, nc, dtype=torch.bool),
            "tgt_idx": torch.zeros(b, nt, dtype=torch.long),
            "tgt_block": torch.full((b, nt), -1, dtype=torch.long),
            "tgt_keep": torch.zeros(b, nt, dtype=torch.bool),
        }
        for i in range(b):
            out["ctx_idx"][i, : len(ctx[i])] = torch.from_numpy(ctx[i])
            out["ctx_keep"][i, : len(ctx[i])] = True
            out["tgt_idx"][i, : len(tgt[i])] = torch.from_numpy(tgt[i])
            out["tgt_block"][i, : len(tgt[i])] = torch.from_numpy(blk[i])
            keep = np.ones(len(tgt[i]), bool) if valids[i] is None else valids[i][tgt[i]]
            out["tgt_keep"][i, : len(tgt[i])] = torch.from_numpy(keep)
        return out


def predictor_attn_mask(ctx_keep: torch.Tensor, tgt_block: torch.Tensor, independent: bool = True) -> torch.Tensor:
    """[B, 1, L, L] bool for the sequence [context, targets]; True means "may attend".

    Context tokens attend to the valid context. A target token attends to the valid context and,
    when ``independent``, only to the tokens of its own block (each block predicted as if alone);
    otherwise to all valid target tokens. Padding queries attend to the context so no row is empty.
    """
    nc = ctx_keep.shape[1]
    tgt_valid = tgt_block >= 0
    keys = torch.cat([ctx_keep, tgt_valid], dim=1)  # [B, L]
    b, L = keys.shape
    mask = keys[:, None, :].expand(b, L, L).clone()
    mask[:, :nc, nc:] = False  # context never sees targets
    if independent:
        same = tgt_block[:, :, None] == tgt_block[:, None, :]
        mask[:, nc:, nc:] &= same
    return mask[:, None]
