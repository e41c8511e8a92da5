"""Checkpoint folders, torchvision backbones, and refusing anything that would execute code."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import torchvision

from srg_deploy.checkpoint import load_model, random_model, save_checkpoint
from srg_deploy.commands.init import init_checkpoint
from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.vocab import vg50_predicates, vg150_objects


def test_round_trip(tmp_path, model):
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_seed_is_reproducible_and_config_records_it():
    a, b = random_model(SRGConfig(), 3), random_model(SRGConfig(), 3)
    assert torch.equal(a.relation_head.weight, b.relation_head.weight)
    assert torch.equal(a.trunk.layer3[22].bn3.running_var, b.trunk.layer3[22].bn3.running_var)
    assert not torch.equal(a.relation_head.weight, random_model(SRGConfig(), 4).relation_head.weight)


def test_init_with_torchvision_backbone(tmp_path):
    torch.manual_seed(11)
    resnet = torchvision.models.resnet101(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet101.pth")
    message = init_checkpoint(tmp_path / "ck", backbone=tmp_path / "resnet101.pth", seed=1)
    assert "UNTRAINED" in message and "resnet101.pth" in message
    loaded = load_model(tmp_path / "ck")
    assert torch.equal(loaded.trunk.layer3[22].conv2.weight, resnet.layer3[22].conv2.weight)
    assert torch.equal(loaded.res5[2].bn3.running_var, resnet.layer4[2].bn3.running_var)
    assert torch.equal(loaded.trunk.conv1.weight, resnet.conv1.weight)


def test_vocabularies_are_vg150_and_vg50_in_dict_order(tmp_path):
    objects, predicates = vg150_objects(), vg50_predicates()
    assert len(objects) == 150 and len(predicates) == 50
    assert objects[:3] == ["airplane", "animal", "arm"] and objects[-1] == "zebra"
    assert predicates[:2] == ["above", "across"] and predicates[-1] == "with"
    init_checkpoint(tmp_path / "ck", seed=0)
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["objects"] == objects and config["predicates"] == predicates
    assert config["preprocessing"]["min_size"] == 600 and config["preprocessing"]["max_size"] == 1000


def test_other_vocabularies_by_config_alone(tmp_path):
    """The paper's 20 grouped predicates and bottom-up-attention's 1600 objects: the heads follow the config."""
    (tmp_path / "objects.txt").write_text("\n".join(f"obj{k},alias" for k in range(1600)))
    (tmp_path / "predicates.txt").write_text("\n".join(f"group{k}" for k in range(20)))
    init_checkpoint(tmp_path / "ck", objects=tmp_path / "objects.txt", predicates=tmp_path / "predicates.txt")
    model = load_model(tmp_path / "ck")
    assert model.object_head.out_features == 1601 and model.relation_head.out_features == 21
    assert model.config.objects[0] == "obj0"
    with torch.no_grad():
        _, obj, rel = model(
            torch.randn(1, 3, 64, 64), torch.tensor([[0.0, 0, 30, 30], [10, 10, 60, 60]]), torch.tensor([[0, 1]])
        )
    assert obj.shape == (2, 1601) and rel.shape == (1, 2, 21)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_backbone_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    with pytest.raises(SRGError, match="weights-only"):
        init_checkpoint(tmp_path / "ck", backbone=tmp_path / "evil.pth")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "ck").exists()


def test_load_reports_missing_and_misshapen_tensors(tmp_path, model):
    from safetensors.torch import load_file, save_file

    save_checkpoint(model, tmp_path / "ck")
    state = load_file(tmp_path / "ck" / "model.safetensors")
    del state["relation_head.bias"]
    state["object_head.weight"] = state["object_head.weight"][:10].contiguous()
    save_file(state, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(SRGError, match=r"missing relation_head.bias.*shape mismatch object_head.weight"):
        load_model(tmp_path / "ck")
