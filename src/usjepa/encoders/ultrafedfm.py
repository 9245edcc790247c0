"""ultrafedfm:PATH, UltraFedFM (github.com/yuncheng97/UltraFedFM), an MAE ViT-B/16 pretrained by federated learning.

- Layout: ``{'model': MAE state dict, 'optimizer', 'epoch', 'scaler', 'args': argparse.Namespace}``
  (util/misc.py ``save_model``); the Namespace needs full unpickling, so the file is refused and the error
  gives a one-line conversion to safetensors that unpickles nothing but that Namespace.
- Architecture: ``mae_vit_base_patch16``: ViT-B/16, 12 heads (models_mae.py, scripts/pretrain.sh ``--model``).
- Input: 224 px (main_diagnosis.py ``--input_size``), RGB, ImageNet mean / std (util/datasets.py#L80-L81).
- Pooling: the patch mean through a fresh fc_norm, as its diagnosis fine-tuning builds the model
  (main_diagnosis.py ``global_pool`` default True; models_vit.py#L31-L36 deletes the pretrained norm).
"""

from __future__ import annotations

from usjepa.encoders.frozen import FrozenEncoder
from usjepa.encoders.mae_layout import mae_encoder
from usjepa.encoders.published import read_checkpoint
from usjepa.encoders.registry import register
from usjepa.modelio import IMAGENET_MEAN, IMAGENET_STD

PUBLISHED = (
    "https://github.com/yuncheng97/UltraFedFM#readme (Google Drive / Baidu / OneDrive links: "
    "drive.google.com/file/d/13cczqVFk84c_9QDP2OLURU1jWryCky5f)"
)
HEADS = 12
CONVERT = (
    'convert it once with: python -c "import argparse, torch; from safetensors.torch import save_file; '
    "torch.serialization.add_safe_globals([argparse.Namespace]); "
    "save_file(torch.load('IN.pth', weights_only=True)['model'], 'OUT.safetensors')\" "
    "(it allows only argparse.Namespace besides tensors), then use ultrafedfm:OUT.safetensors"
)


@register("ultrafedfm", "ultrafedfm:PATH", "UltraFedFM's MAE ViT-B/16 (converted to .safetensors; mean pooling)")
def build(spec: str, path: str) -> FrozenEncoder:
    ckpt = read_checkpoint(
        spec, path, "the UltraFedFM checkpoint (an MAE ViT-B/16 under 'model')", PUBLISHED, convert=CONVERT
    )
    return mae_encoder(ckpt, HEADS, "avg", IMAGENET_MEAN, IMAGENET_STD, "head", "MAE pretraining layout")
