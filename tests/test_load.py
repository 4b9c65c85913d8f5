"""Loading: every label encoding decodes to class indices; unusable data is an InputError."""

from __future__ import annotations

import numpy as np
import pytest

from kerasdoctor.errors import InputError
from kerasdoctor.load import decode_labels, read_npz


@pytest.mark.unit
@pytest.mark.parametrize(
    ("y", "encoding"),
    [
        (np.array([0, 2, 1, 2]), "index"),
        (np.array([0.0, 2.0, 1.0, 2.0]), "index"),
        (np.eye(3)[[0, 2, 1, 2]], "one-hot"),
        (np.array([[0], [2], [1], [2]]), "index"),
    ],
)
def test_multiclass_encodings_decode_to_indices(y: np.ndarray, encoding: str) -> None:
    labels = decode_labels(y, None)
    assert labels.y.tolist() == [0, 2, 1, 2]
    assert labels.encoding == encoding


@pytest.mark.unit
def test_binary_and_bool_labels() -> None:
    assert decode_labels(np.array([[1], [0], [1]]), None).y.tolist() == [1, 0, 1]
    b = decode_labels(np.array([True, False, True]), None)
    assert (b.y.tolist(), b.encoding) == ([1, 0, 1], "bool")


@pytest.mark.unit
def test_soft_labels_take_the_argmax() -> None:
    y = np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]])
    assert decode_labels(y, None).y.tolist() == [0, 2]


@pytest.mark.unit
def test_string_labels_follow_class_names() -> None:
    labels = decode_labels(np.array(["grape", "apple"]), ["apple", "orange", "grape"])
    assert labels.y.tolist() == [2, 0]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("y", "fragment"),
    [
        (np.array([0.0, np.nan, 1.0]), "NaN/Inf labels (first at row 1)"),
        (np.array([0, -1, 1]), "negative labels"),
        (np.array([0.5, 1.0]), "non-integer labels"),
        (np.array([[1, 1, 0], [0, 1, 0]]), "multi-label"),
        (np.zeros((2, 2, 2)), "expected (N,) or (N, K)"),
    ],
)
def test_bad_labels_are_input_errors(y: np.ndarray, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        decode_labels(y, None, where="y")
    assert fragment in str(info.value)


@pytest.mark.unit
def test_object_arrays_are_never_unpickled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    raw = read_npz(path)  # y is fine; the object array is refused only when it is used
    assert "x" in raw.refused


@pytest.mark.unit
@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"module": "os", "class_name": "system"}, ("os.system", "model")),
        ({"layers": [{"class_name": "subprocess.Popen"}]}, ("subprocess.Popen", "layer")),
        (
            {
                "layers": [
                    {
                        "class_name": "Dense",
                        "config": {
                            "activation": {
                                "module": "builtins",
                                "class_name": "function",
                                "config": "exec",
                            }
                        },
                    }
                ]
            },
            ("builtins.exec", "activation"),
        ),
        ({"optimizer": {"module": "numpy", "class_name": "load"}}, ("numpy.load", "object")),
    ],
)
def test_configs_naming_callables_outside_keras(node: dict, expected: tuple) -> None:  # type: ignore[type-arg]
    from kerasdoctor.load import foreign_callable

    assert foreign_callable(node) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    "node",
    [
        {"module": "keras.layers", "class_name": "Dense"},
        {"module": "builtins", "class_name": "function", "config": "relu"},  # Keras 2 built-in
        {"module": "my_layers", "class_name": "MyDense", "registered_name": "Custom>MyDense"},
        {"module": "__main__", "class_name": "MyDense"},
        {"class_name": "Lambda", "config": {"module": "os", "function": ["..."]}},
        {"class_name": "Dense", "config": {"name": "os.system"}},
    ],
)
def test_keras_and_custom_objects_are_not_foreign(node: dict) -> None:  # type: ignore[type-arg]
    from kerasdoctor.load import foreign_callable

    assert foreign_callable(node) is None


@pytest.mark.unit
def test_special_files_are_refused_without_opening(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from kerasdoctor.load import refuse_special_file

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"DATA: .*/p is a named pipe \(FIFO\)"):
        refuse_special_file(fifo, "DATA")  # would block for ever if it opened the FIFO
    refuse_special_file(tmp_path, "DATA")  # a directory is fine
    refuse_special_file(tmp_path / "missing", "DATA")  # left to the caller
