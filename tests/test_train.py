import csv

import torch
from safetensors.torch import load_file

from usjepa.cli import main
from usjepa.config import load_config
from usjepa.modelio import export_run, load_encoder
from usjepa.train import Trainer


def _losses(run):
    with open(run / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def _common(folder, run, tiny):
    return tiny + [
        f"out={run}",
        f"data.sources=[{folder}]",
        "data.num_workers=0",
        "optim.batch_size=16",
        "log_every=1",
        "data.val_fraction=0.2",
    ]


def test_stage1_then_stage2_from_the_cli(tmp_path, image_folder, tiny_overrides):
    t_run, s_run = tmp_path / "vpixel", tmp_path / "salt"
    rc = main(
        [
            "pretrain",
            "--config",
            "tiny",
            *_common(image_folder, t_run, tiny_overrides),
            "method=vpixel",
            "optim.epochs=2",
        ]
    )
    assert rc == 0
    for f in (
        "config.yaml",
        "metrics.csv",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "export/model.safetensors",
        "export/card.json",
    ):
        assert (t_run / f).is_file(), f
    assert list((t_run / "tb").iterdir()), "no TensorBoard events"
    exported = load_file(t_run / "export" / "model.safetensors")

    cfg = load_config(
        "tiny",
        _common(image_folder, s_run, tiny_overrides)
        + [f"teacher.source={t_run}", "optim.epochs=12", "optim.lr=2e-3", "optim.warmup_epochs=1"],
    )
    trainer = Trainer(cfg)
    result = trainer.fit()
    assert result["status"] == "done"
    losses = _losses(s_run)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last <= 0.7 * first, f"SALT loss fell only from {first:.4f} to {last:.4f}"
    teacher = trainer.method.teacher.model.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in exported.items()), "the teacher changed during stage 2"
    model, card = load_encoder(s_run)
    assert card["method"] == "salt" and card["role"] == "student"


def test_export_loads_in_timm_and_matches_the_encoder(tmp_path, image_folder, tiny_overrides):
    import timm

    run = tmp_path / "mae"
    assert (
        main(
            [
                "pretrain",
                "--config",
                "tiny",
                *_common(image_folder, run, tiny_overrides),
                "method=mae",
                "optim.epochs=1",
            ]
        )
        == 0
    )
    out = export_run(run, tmp_path / "exp", which="last")
    import json

    card = json.loads((out / "card.json").read_text())
    model = timm.create_model(card["arch"], **card["timm_kwargs"])
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    trainer = Trainer(load_config(run / "config.yaml"))  # resumes the finished run's last checkpoint
    img = torch.rand(2, 1, 32, 32)
    model.eval(), trainer.method.eval()
    ours = trainer.method.encoder(trainer.method.normalize(img))
    ref = model.forward_features((img - 0.5) / 0.5)[:, model.num_prefix_tokens :]
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_bad_run_directory_and_device(tmp_path, image_folder, tiny_overrides):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["pretrain", "--config", "tiny", *_common(image_folder, blocker / "run", tiny_overrides), "method=mae"])
    assert rc == 2
    if not torch.cuda.is_available():
        assert (
            main(
                [
                    "pretrain",
                    "--config",
                    "tiny",
                    *_common(image_folder, tmp_path / "r", tiny_overrides),
                    "method=mae",
                    "device=cuda",
                ]
            )
            == 2
        )


def test_step_limit_mid_epoch_still_validates(tmp_path, image_folder, tiny_overrides):
    run = tmp_path / "mae"
    cfg = load_config(
        "tiny", _common(image_folder, run, tiny_overrides) + ["method=mae", "optim.epochs=1", "max_steps=2"]
    )
    trainer = Trainer(cfg)
    assert trainer.steps_per_epoch > 2
    result = trainer.fit()
    assert result["step"] == 2 and result["best_val"] < float("inf")
    with open(run / "metrics.csv") as f:
        vals = [r for r in csv.DictReader(f) if r["val_loss"]]
    assert [int(r["step"]) for r in vals] == [2] and float(vals[0]["val_loss"]) == result["best_val"]
    assert (run / "checkpoints" / "best.pt").is_file()
