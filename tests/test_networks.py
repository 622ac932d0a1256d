"""Networks: forward passes for 3/4/8/14 bands, ONNX export matching torch, parameter counts."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract  # noqa: E402
from glacierseg.core.errors import ModelContractError  # noqa: E402
from glacierseg.models import build_model, count_parameters, export_onnx, head_logits, list_models, to_probabilities  # noqa: E402
from glacierseg.models.networks.blocks import CBAM  # noqa: E402
from glacierseg.models.networks.rau_net import ResidualConvBlock  # noqa: E402

torch.set_num_threads(1)
NAMES = [
    "unet",
    "boundary_unet",
    "deeplabv3plus",
    "attention_deeplabv3plus",
    "rau_net",
    "rau_net_small",
    "unet_efficientnet_b0",
    "unet_resnet34",
    "unet_resnet50",
]
PUBLISHED_M = {"unet": 31.0, "rau_net": 24.8, "rau_net_small": 2.6}


def contract(n_bands: int, classes=("glacier",), tile: int = 64) -> ModelContract:
    return ModelContract(
        task="glacier",
        classes=tuple(ClassInfo(n, i + 1, "#00ffff") for i, n in enumerate(classes)),
        bands=tuple(InputSpec(f"S2:B{i + 1:02d}", scale=1e-4) for i in range(n_bands)),
        resolution_m=10.0,
        tile_size=tile,
        activation="sigmoid",
        thresholds={n: 0.5 for n in classes},
        receptive_field_px=32,
    )


def test_registry_lists_every_network():
    assert list_models() == sorted(NAMES)
    with pytest.raises(KeyError, match="unknown network 'nope'"):
        build_model("nope", 3, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels, num_classes", [(3, 1), (4, 3), (8, 2), (14, 1)])
def test_forward_eval_shape(name, in_channels, num_classes):
    torch.manual_seed(0)
    model = build_model(name, in_channels, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(1, in_channels, 64, 64))
    assert out.shape == (1, num_classes, 64, 64)
    assert torch.isfinite(out).all()
    expected = "none" if name.startswith("rau_net") else ("sigmoid" if num_classes == 1 else "softmax")
    assert model.output_activation == expected


@pytest.mark.parametrize("name", NAMES)
def test_train_step_gives_finite_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, 4, 3).train()
    x = torch.randn(2, 4, 32, 64)
    out = model(x)
    heads = out if isinstance(out, list) else [out]
    assert len(heads) == (3 if name.startswith("rau_net") else 1)
    assert all(h.shape == (2, 3, 32, 64) for h in heads)
    sum(h.square().mean() for h in heads).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == sum(1 for p in model.parameters())
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_torch(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    num_classes = 2
    model = build_model(name, 4, num_classes)
    path = export_onnx(model, contract(4, ("clean_ice", "debris"), tile=32), str(tmp_path / f"{name}.onnx"))
    assert model.training  # mode restored
    model.eval()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 4, 64, 32)  # batch and size differ from the traced (1, 4, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    (got,) = session.run(None, {"input": x.numpy()})
    assert got.shape == (2, num_classes, 64, 32)
    diff = float(np.abs(got - expected).max())
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    meta = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert meta.activation == model.output_activation
    assert meta.class_names == ["clean_ice", "debris"] and len(meta.bands) == 4
    assert session.get_outputs()[0].name == ("probabilities" if meta.activation == "none" else "logits")
    print(f"\n{name}: {count_parameters(model) / 1e6:.2f} M parameters (4 bands, 2 classes), "
          f"max |onnx - torch| {diff:.1e} (outputs up to {np.abs(expected).max():.1f})"
          + (f", published {PUBLISHED_M[name]} M" if name in PUBLISHED_M else ""))


@pytest.mark.parametrize("name, tolerance", [("unet", 0.01), ("rau_net", 0.05), ("rau_net_small", 0.10)])
def test_parameter_count_near_published(name, tolerance):
    n = count_parameters(build_model(name, 3, 2)) / 1e6
    print(f"\n{name}: {n:.2f} M parameters (3 bands, 2 classes), published {PUBLISHED_M[name]} M")
    assert abs(n - PUBLISHED_M[name]) <= tolerance * PUBLISHED_M[name]


def test_boundary_unet_layout():
    model = build_model("boundary_unet", 4, 2)
    assert model.stem[0][0].out_channels == 32
    assert sum(isinstance(m, torch.nn.GELU) for m in model.modules()) == 18  # 9 double convs
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert len(drops) == 8 and all(d.p == 0.1 for d in drops)  # after 4 down + 4 up blocks
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU)) for m in model.modules())


def test_deeplab_resnet50_option():
    r34 = build_model("deeplabv3plus", 3, 1)
    r50 = build_model("deeplabv3plus", 3, 1, encoder="resnet50")
    assert r34.encoder.out_channels[-1] == 512 and r50.encoder.out_channels[-1] == 2048
    assert [c[0][0].dilation for c in r34.decoder.aspp[0].convs[1:4]] == [(6, 6), (12, 12), (18, 18)]


def test_rau_net_eval_averages_head_probabilities():
    torch.manual_seed(0)
    for num_classes in (1, 3):
        model = build_model("rau_net_small", 4, num_classes).eval()
        x = torch.randn(1, 4, 64, 64)
        with torch.no_grad():
            heads = head_logits(model, x)
            out = model(x)
        act = torch.sigmoid if num_classes == 1 else (lambda t: torch.softmax(t, dim=1))
        torch.testing.assert_close(out, sum(act(h) for h in heads) / 3)
        assert to_probabilities(model, out) is out
        if num_classes == 3:
            torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 64, 64))


def test_cbam_with_zero_weights_halves_twice():
    cbam = CBAM(8, reduction=4)
    assert cbam[1].conv.kernel_size == (7, 7) and cbam[0].mlp[0].out_channels == 2
    for p in cbam.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(cbam(x), x * 0.25)  # sigmoid(0) channel × sigmoid(0) spatial


def test_residual_block_identity_path():
    block = ResidualConvBlock(4, 4).eval()
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.zeros_(m.weight)
    x = torch.randn(1, 4, 7, 9)
    torch.testing.assert_close(block(x), torch.nn.functional.leaky_relu(x))


def test_export_rejects_mismatches_and_bad_tile(tmp_path):
    model = build_model("rau_net_small", 4, 1)
    with pytest.raises(ModelContractError, match="4 input channels but the contract lists 3"):
        export_onnx(model, contract(3), str(tmp_path / "m.onnx"))
    with pytest.raises(ModelContractError, match="1 output channel.* but the contract lists 2 classes"):
        export_onnx(model, contract(4, ("a", "b")), str(tmp_path / "m.onnx"))
    with pytest.raises(ModelContractError, match="multiple of 32"):
        export_onnx(model, contract(4, tile=48), str(tmp_path / "m.onnx"))
    assert not list(tmp_path.iterdir())


def test_select_device_prefers_cuda_when_available():
    from glacierseg.models import select_device

    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")
