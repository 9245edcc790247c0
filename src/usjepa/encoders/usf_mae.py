"""usf-mae:PATH, USF-MAE (Megahed et al. 2026; github.com/Yusufii9/USF-MAE), an MAE ViT-B/16 on 370k ultrasound images.

- Layout: the whole MAE, ``torch.save(model.state_dict())`` of ``mae_vit_base_patch16_dec512d8b``
  (USF-MAE_pretraining.ipynb, cell 6): the encoder in timm's names plus the decoder, which is dropped.
- Architecture: ViT-B/16, 12 heads, qkv bias, LayerNorm eps 1e-6
  (github.com/facebookresearch/mae/blob/efb2a80/models_mae.py#L223-L228).
- Input: 224 px RGB (``Image.convert("RGB")``), ImageNet mean / std (US_data_loading.py, ``get_transforms``).
- Pooling: CLS after the final norm, MAE's linear-probe feature
  (github.com/facebookresearch/mae/blob/efb2a80/main_linprobe.py#L72-L74, models_vit.py#L49-L51).
"""

from __future__ import annotations

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.mae_layout import mae_encoder
from usjepa.encoders.published import read_checkpoint
from usjepa.encoders.registry import register
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD

PUBLISHED = (
    "https://github.com/Yusufii9/USF-MAE#-checkpoints (Google Drive: USF-MAE 100 epochs, "
    "drive.google.com/file/d/1ZPu_7KhMEuaq-XdLhVp2EEgMgLJ4dKhr)"
)
HEADS = 12


@register("usf-mae", "usf-mae:PATH", "USF-MAE's MAE ViT-B/16 checkpoint (decoder dropped; CLS pooling)")
def build(spec: str, path: str) -> FrozenEncoder:
    ckpt = read_checkpoint(spec, path, "the USF-MAE checkpoint (an MAE ViT-B/16 state dict)", PUBLISHED)
    return mae_encoder(ckpt, HEADS, "token", IMAGENET_MEAN, IMAGENET_STD, "cls", "MAE pretraining layout")
