"""The model contract: round trip, validation messages that name the key, sidecars."""
import json

import pytest

from glacierseg.core.contract import REQUIRED_KEYS, ModelContract, read_contract
from glacierseg.core.errors import ModelContractError
from glacierseg.models.sample import sample_contract


def metadata():
    return dict(sample_contract().to_metadata())


def test_round_trip_through_metadata_and_onnx(sample_model):
    assert ModelContract.from_metadata(metadata()) == sample_contract(tile_size=256)
    assert read_contract(sample_model) == sample_contract(tile_size=64)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_named(key):
    meta = metadata()
    del meta[key]
    with pytest.raises(ModelContractError, match=f"'{key}'"):
        ModelContract.from_metadata(meta)


@pytest.mark.parametrize("key,value,message", [
    ("activation", "relu", "'activation'"),
    ("task", "glaciers", "'task'"),
    ("tile_size", 0, "'tile_size'"),
    ("resolution_m", -10, "'resolution_m'"),
    ("classes", [{"name": "ice", "value": 1}], "'classes\\[0\\]'"),
    ("classes", [{"name": "ice", "value": 1, "color": "blue"}], "'color'"),
    ("bands", [{"name": "S2:B03"}], "'bands\\[0\\]'"),
    ("bands", [{"name": "S2:B03", "mean": 1.0}], "'bands\\[0\\]'"),
    ("thresholds", {"glacier": 1.5}, "'thresholds'"),
    ("thresholds", {"rock": 0.5}, "unknown class"),
    ("precedence", ["rock"], "'precedence'"),
    ("glacierseg_version", "99", "contract version"),
])
def test_malformed_values_are_named(key, value, message):
    meta = metadata()
    meta[key] = json.dumps(value)
    with pytest.raises(ModelContractError, match=message):
        ModelContract.from_metadata(meta)


def test_invalid_json_is_named():
    meta = metadata()
    meta["classes"] = "[{'name': 'ice'}"
    with pytest.raises(ModelContractError, match="'classes' is not valid JSON"):
        ModelContract.from_metadata(meta)


def test_receptive_field_or_overlap_required():
    meta = metadata()
    del meta["receptive_field_px"]
    with pytest.raises(ModelContractError, match="receptive_field_px"):
        ModelContract.from_metadata(meta)
    meta["overlap_px"] = "32"
    assert ModelContract.from_metadata(meta).default_overlap_px == 32


def test_scaling_in_native_units():
    import numpy as np

    c = ModelContract.from_dict(dict(
        {k: json.loads(v) for k, v in metadata().items()},
        bands=[{"name": "S2:B03", "mean": 1200.0, "std": 400.0}, {"name": "S2:B08", "scale": 1e-4, "offset": -0.1},
               {"name": "NDSI(S2:B03,S2:B11)", "scale": 1.0}],
    ))
    x = np.array([400.0, 1200.0, 2000.0], np.float32)  # uint16 reflectance ×10000
    assert np.allclose(c.bands[0].normalise(x), [-2.0, 0.0, 2.0])
    assert np.allclose(c.bands[1].normalise(x), [-0.06, 0.02, 0.1])
    assert c.bands[2].feature == ("NDSI", ("S2:B03", "S2:B11"))
    assert c.source_bands == ["S2:B03", "S2:B08", "S2:B11"]


def test_precedence_order_puts_named_classes_first():
    assert [c.name for c in sample_contract().precedence_order()] == ["glacial_lake", "glacier"]


def test_sidecar_json_for_foreign_onnx(tmp_path):
    contract = sample_contract()
    model = tmp_path / "foreign.onnx"
    contract.to_json_file(str(tmp_path / "model.json"))
    assert read_contract(str(model), embedded={}) == contract


def test_threshold_override_is_parsed_and_checked_against_the_classes():
    from glacierseg.core.contract import parse_thresholds
    from glacierseg.core.errors import InputError

    c = sample_contract()
    assert parse_thresholds("", c) == {} and parse_thresholds("  ", c) == {}
    assert parse_thresholds("0.4", c) == {name: 0.4 for name in c.class_names}
    assert parse_thresholds(" glacier = 0.3 ", c) == {"glacier": 0.3}
    with pytest.raises(InputError, match="not a number or a list"):
        parse_thresholds("glacier=0.3=0.4", c)
    with pytest.raises(InputError, match="not a number or a list"):
        parse_thresholds("high", c)
    with pytest.raises(InputError, match=r"unknown class\(es\) \['rock'\]"):
        parse_thresholds("rock=0.3", c)
    with pytest.raises(InputError, match="between 0 and 1"):
        parse_thresholds("glacier=1.3", c)


def test_activation_and_class_decision_follow_the_contract():
    import numpy as np

    from glacierseg.core.contract import activate

    raw = np.array([[[[0.0, 40.0]], [[-1000.0, 2.0]]]], np.float32)  # (1, 2, 1, 2)
    sig = activate(raw, "sigmoid")
    from scipy.special import expit

    assert np.allclose(sig, expit(raw.astype(np.float64))) and np.isfinite(sig).all()
    soft = activate(raw, "softmax")
    assert np.allclose(soft.sum(axis=1), 1.0) and np.isfinite(soft).all()
    assert np.array_equal(activate(raw, "none"), raw)
    c = sample_contract()  # independent classes: lake wins over glacier (precedence)
    probs = np.array([[[0.9, 0.9, 0.2]], [[0.2, 0.8, 0.2]]], np.float32)  # glacier, glacial_lake
    assert [c.class_names[0], c.class_names[1]] == ["glacier", "glacial_lake"]
    values = {x.name: x.value for x in c.classes}
    assert c.classify(probs).tolist() == [[values["glacier"], values["glacial_lake"], c.background.value]]
    assert c.classify(probs, {"glacier": 0.95}).tolist() == [[c.background.value, values["glacial_lake"], c.background.value]]
