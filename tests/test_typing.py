"""The package is typed (PEP 561): py.typed ships, and the public API of the
networks and estimators is annotated with hints that resolve at run time."""
import inspect
import typing
from importlib import resources

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

PUBLIC = ["__init__", "fit", "partial_fit", "predict", "predict_classes", "score", "loss",
          "gradients", "trace", "summary", "save", "load", "to_onnx", "from_sklearn",
          "from_torch", "get_params", "set_params"]


def test_py_typed_ships_with_the_package():
    assert resources.files("fastmlp").joinpath("py.typed").is_file()


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
@pytest.mark.parametrize("name", PUBLIC)
def test_network_methods_are_annotated(cls, name):
    fn = getattr(cls, name)
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    assert "return" in hints and all(p in hints for p in params), (name, hints)


def test_some_hints_say_what_they_mean():
    assert typing.get_type_hints(fastmlp.Network.fit)["return"] is fastmlp.History
    assert typing.get_type_hints(fastmlp.Network.predict)["return"] is np.ndarray
    assert typing.get_type_hints(fastmlp.Network.plan)["return"] is dict
    assert typing.get_type_hints(fastmlp.Network.score)["return"] is float


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_estimator_methods_are_annotated(name):
    pytest.importorskip("sklearn")
    cls = getattr(fastmlp, name)
    for method in ("fit", "partial_fit", "predict") + (
            ("predict_proba", "predict_log_proba") if name == "MLPClassifier" else ()):
        hints = typing.get_type_hints(getattr(cls, method))
        assert "return" in hints and "X" in hints, (method, hints)
