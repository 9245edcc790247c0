"""The peers' own training steps, imported from checkouts kept outside this repository (never copied here).

  ijepa   facebookresearch/ijepa@52c1ae9: ``src.helper.init_model`` / ``init_opt`` (its ViT, predictor, AdamW
          groups and schedules), its ``MaskCollator`` (block sizes per batch, positions per image, masks
          truncated to the batch minimum) and the body of the ``train_step`` in its ``src/train.py``, which is a
          closure inside ``main`` and so cannot be imported: forward_target (EMA encoder, layer norm,
          apply_masks, repeat_interleave_batch), forward_context, smooth-L1 with its AllReduce, AdamW, its
          grad_logger, and the EMA update one parameter at a time. No clipping, as in its loop.
  sp      galilai-group/stable-pretraining@d15ec96: ``stable_pretraining.methods.SALT`` (frozen teacher under
          no_grad, one multi-block mask per batch drawn inside its forward, all targets in one predictor pass,
          L1 loss), stepped with AdamW and clipping at 1.0. Needs lightning, loguru, omegaconf, hydra-core,
          kornia, datasets, ... installed (none of them a usjepa dependency).

Both build 3-channel models, as their code does by default; usjepa's steps use 1 channel (only the patch
embedding differs).
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import types

import torch
import torch.nn.functional as F

IMG, PATCH = 224, 16


def _on_path(root: str) -> None:
    if not os.path.isdir(root):
        raise SystemExit(f"peer checkout not found: {root}")
    if root not in sys.path:
        sys.path.insert(0, root)


class IJepaStep:
    """facebookresearch/ijepa's step on its own ViT-T/16, predictor (depth, width; heads = the encoder's)."""

    def __init__(self, root: str, mask, pred_depth: int, pred_dim: int):
        _on_path(root)
        helper = importlib.import_module("src.helper")
        logging.getLogger().setLevel(logging.WARNING)  # its helper logs the whole model at INFO
        masks_utils = importlib.import_module("src.masks.utils")
        tensors = importlib.import_module("src.utils.tensors")
        self.dist = importlib.import_module("src.utils.distributed")
        self.grad_logger = importlib.import_module("src.utils.logging").grad_logger
        self.apply_masks, self.repeat = masks_utils.apply_masks, tensors.repeat_interleave_batch
        torch.manual_seed(0)
        cpu = torch.device("cpu")
        self.encoder, self.predictor = helper.init_model(cpu, PATCH, "vit_tiny", IMG, pred_depth, pred_dim)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.opt, _, self.lr_sched, self.wd_sched = helper.init_opt(
            self.encoder,
            self.predictor,
            iterations_per_epoch=1000,
            start_lr=1e-5,
            ref_lr=1e-4,
            warmup=1,
            num_epochs=10,
            wd=0.04,
            final_wd=0.4,
        )
        collator_cls = importlib.import_module("src.masks.multiblock").MaskCollator
        self.collator = collator_cls(
            input_size=IMG,
            patch_size=PATCH,
            enc_mask_scale=mask.ctx_scale,
            pred_mask_scale=mask.tgt_scale,
            aspect_ratio=mask.tgt_aspect,
            nenc=1,
            npred=mask.n_targets,
            min_keep=mask.min_keep,
            allow_overlap=False,
        )
        self.m = 0.996

    def batches(self, n: int, batch: int) -> list:
        g = torch.Generator().manual_seed(0)
        return [self.collator([(torch.rand(3, IMG, IMG, generator=g), 0) for _ in range(batch)]) for _ in range(n)]

    def __call__(self, batch) -> float:
        (imgs, _), masks_enc, masks_pred = batch
        self.lr_sched.step()
        self.wd_sched.step()
        with torch.no_grad():
            h = self.target(imgs)
            h = F.layer_norm(h, (h.size(-1),))
            h = self.repeat(self.apply_masks(h, masks_pred), len(h), repeat=len(masks_enc))
        z = self.predictor(self.encoder(imgs, masks_enc), masks_enc, masks_pred)
        loss = self.dist.AllReduce.apply(F.smooth_l1_loss(z, h))
        loss.backward()
        self.opt.step()
        self.grad_logger(self.encoder.named_parameters())
        self.opt.zero_grad()
        with torch.no_grad():
            for q, k in zip(self.encoder.parameters(), self.target.parameters(), strict=True):
                k.data.mul_(self.m).add_((1.0 - self.m) * q.detach().data)
        return float(loss)


class SPSaltStep:
    """stable-pretraining's SALT module on timm's ViT-T/16 with a (depth x width x heads) predictor."""

    def __init__(self, root: str, mask, pred_depth: int, pred_dim: int, pred_heads: int):
        _on_path(root)
        os.environ.setdefault("LOGURU_LEVEL", "WARNING")
        if "stable_pretraining._version" not in sys.modules:  # written by setuptools-scm at install time
            version = types.ModuleType("stable_pretraining._version")
            version.version = "0+checkout"
            sys.modules[version.__name__] = version
        salt_cls = importlib.import_module("stable_pretraining.methods.salt").SALT
        torch.manual_seed(0)
        self.model = salt_cls(
            "vit_tiny_patch16_224",
            predictor_embed_dim=pred_dim,
            predictor_depth=pred_depth,
            predictor_num_heads=pred_heads,
            num_targets=mask.n_targets,
            context_scale=mask.ctx_scale,
            target_scale=mask.tgt_scale,
            context_aspect_ratio=mask.ctx_aspect,
            target_aspect_ratio=mask.tgt_aspect,
        ).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, weight_decay=0.04)

    @staticmethod
    def batches(n: int, batch: int) -> list:
        g = torch.Generator().manual_seed(0)
        return [torch.rand(batch, 3, IMG, IMG, generator=g) for _ in range(n)]

    def __call__(self, images: torch.Tensor) -> None:
        out = self.model(images)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad()
