"""Save and load: round trips, atomic writes, and every kind of bad file refused."""
import io
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import io as fio
from fastmlp import reference
from fastmlp.errors import ModelFileError

from helpers import make_targets, randomise_biases, refused

ARCHS = [
    ([3, 1], "identity", "identity", "squared_error"),
    ([2, 3, 1], "sigmoid", "sigmoid", "squared_error"),
    ([4, 6, 3], "tanh", "softmax", "log_loss"),
    ([5, 8, 7, 2], "relu", "sigmoid", "log_loss"),
    ([40, 64, 10], "relu", "softmax", "squared_error"),
]


def trained(cls=fastmlp.Network, sizes=(4, 6, 3), act="tanh", out="softmax",
            loss="log_loss", dtype="float64", seed=0, l2=0.01):
    net = cls(list(sizes), activation=act, output=out, loss=loss, dtype=dtype,
              seed=seed, l2=l2, init="he")
    rng = np.random.default_rng(seed)
    randomise_biases(net, rng)
    X = rng.normal(size=(20, sizes[0]))
    Y = make_targets(rng, 20, sizes[-1], out, loss)
    net.fit(X, Y, epochs=3, learning_rate=0.05, batch_size=7)
    return net, X, Y


def files_in(directory):
    return sorted(os.listdir(directory))


# ----------------------------------------------------------------- round trip
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", range(len(ARCHS)))
@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_round_trip_predicts_bit_identically(tmp_path, cls, arch, dtype):
    sizes, act, out, loss = ARCHS[arch]
    net, X, Y = trained(cls, sizes, act, out, loss, dtype, seed=arch)
    path = tmp_path / "model.npz"
    assert fio.save(net, path) == str(path)
    back = fio.load(path, cls=cls)
    assert type(back) is cls
    assert back.params.dtype == net.params.dtype and np.array_equal(back.params, net.params)
    for name in ("layer_sizes", "activation", "output", "loss_name", "l2", "init", "dtype", "seed"):
        assert getattr(back, name) == getattr(net, name), name
    assert np.array_equal(back.predict(X), net.predict(X))
    assert back.loss(X, Y) == net.loss(X, Y)
    for (a, b), (c, d) in zip(back.gradients(X, Y), net.gradients(X, Y)):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    # weights/biases of the loaded net are views into its own params
    assert all(np.shares_memory(W, back.params) for W in back.weights)


def test_compiled_file_loads_into_the_reference_twin_and_back(tmp_path):
    net, X, _ = trained(dtype="float64")
    fio.save(net, tmp_path / "a.npz")
    ref = fio.load(tmp_path / "a.npz", cls=reference.Network)
    assert isinstance(ref, reference.Network)
    np.testing.assert_allclose(ref.predict(X), net.predict(X), rtol=1e-12)
    fio.save(ref, tmp_path / "b.npz")
    again = fio.load(tmp_path / "b.npz")
    assert isinstance(again, fastmlp.Network) and np.array_equal(again.params, net.params)


def test_loaded_network_continues_training_exactly_like_the_saved_one(tmp_path):
    net, X, Y = trained(seed=4)
    fio.save(net, tmp_path / "m.npz")
    back = fio.load(tmp_path / "m.npz")
    h1 = net.fit(X, Y, epochs=4, learning_rate=0.1, batch_size=3, shuffle=True)
    h2 = back.fit(X, Y, epochs=4, learning_rate=0.1, batch_size=3, shuffle=True)
    assert h1.loss == h2.loss and np.array_equal(net.params, back.params)


def test_dropout_is_saved_and_a_loaded_network_trains_with_the_same_masks(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.random((20, 2))
    net = fastmlp.Network([3, 8, 2], seed=1, dropout=0.3)
    net.fit(X, Y, epochs=2, batch_size=4)
    fio.save(net, tmp_path / "d.npz")
    assert fio.read_header(tmp_path / "d.npz")["dropout"] == 0.3
    back = fio.load(tmp_path / "d.npz")
    assert back.dropout == 0.3
    assert fio.load(tmp_path / "d.npz", cls=reference.Network).dropout == 0.3
    h1, h2 = (n.fit(X, Y, epochs=2, batch_size=4) for n in (net, back))
    assert h1.loss == h2.loss and np.array_equal(net.params, back.params)
    fio.save(fastmlp.Network([3, 8, 2]), tmp_path / "plain.npz")
    assert "dropout" not in fio.read_header(tmp_path / "plain.npz")     # (as before it existed)


def test_path_is_used_exactly_as_given(tmp_path):
    net, X, _ = trained()
    target = tmp_path / "model.bin"
    assert fio.save(net, str(target)) == str(target)
    assert files_in(tmp_path) == ["model.bin"]             # no ".npz" appended
    assert np.array_equal(fio.load(str(target)).predict(X), net.predict(X))


def test_save_replaces_an_existing_file_and_keeps_default_permissions(tmp_path):
    a, X, _ = trained(seed=1)
    b, _, _ = trained(seed=2)
    path = tmp_path / "m.npz"
    fio.save(a, path)
    fio.save(b, path)
    assert np.array_equal(fio.load(path).params, b.params)
    assert files_in(tmp_path) == ["m.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_the_file_is_an_npz_with_a_readable_header(tmp_path):
    net, _, _ = trained(sizes=(4, 6, 3), dtype="float32", seed=7)
    fio.save(net, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["header", "params"]
        header = json.loads(npz["header"].tobytes())
        assert np.array_equal(npz["params"], net.params)
    # trained by plain SGD: an optimizer entry (samples seen), no state array
    assert header["format"] == "fastmlp.Network" and header["format_version"] == 2
    assert header["optimizer"] == {
        "name": "sgd", "momentum": 0.0, "nesterov": False, "beta1": 0.9, "beta2": 0.999,
        "epsilon": 1e-8, "rho": 0.9, "weight_decay": 0.01, "step": 0, "samples_seen": 3 * 20}
    assert header["fastmlp_version"] == fastmlp.__version__
    assert header["layer_sizes"] == [4, 6, 3] and header["dtype"] == "float32"
    assert header["activation"] == "tanh" and header["output"] == "softmax"
    assert header["loss"] == "log_loss" and header["init"] == "he"
    assert header["l2"] == 0.01 and header["l1"] == 0.0 and header["seed"] == 7
    assert header["n_params"] == net.n_params


def test_save_refuses_non_finite_params_and_non_networks(tmp_path):
    net, _, _ = trained()
    net.params[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        fio.save(net, tmp_path / "m.npz")
    assert files_in(tmp_path) == []
    with pytest.raises(TypeError, match="net must be a fastmlp.Network"):
        fio.save({"params": np.zeros(3)}, tmp_path / "m.npz")


def test_save_refuses_a_replaced_params_buffer(tmp_path):
    net, _, _ = trained()
    with pytest.raises(ValueError, match=r"params must be .* of shape \(\d+,\)"):
        net.params = np.zeros(3)
    net._params = np.zeros(3)             # replaced behind the setter's back
    with pytest.raises(ValueError, match=r"net.params must be a \(\d+,\) array"):
        fio.save(net, tmp_path / "m.npz")


# -------------------------------------------------------------- atomic writes
@pytest.fixture
def good_file(tmp_path):
    net, X, _ = trained(seed=11)
    path = tmp_path / "model.npz"
    fio.save(net, path)
    return path, net, X, open(path, "rb").read()


def assert_intact(path, net, X, blob):
    assert open(path, "rb").read() == blob
    assert np.array_equal(fio.load(path).predict(X), net.predict(X))
    assert files_in(path.parent) == [path.name], "a temporary file was left behind"


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_failure_mid_write_leaves_the_old_file_and_no_temp_file(good_file, monkeypatch, error):
    path, net, X, blob = good_file
    real_savez = np.savez

    def half_then_fail(fh, **arrays):
        buf = io.BytesIO()
        real_savez(buf, **arrays)
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        fh.flush()
        raise error

    monkeypatch.setattr(fio.np, "savez", half_then_fail)
    other, _, _ = trained(seed=12)
    with pytest.raises(type(error)):
        fio.save(other, path)
    monkeypatch.undo()
    assert_intact(path, net, X, blob)


def test_failure_in_fsync_or_rename_leaves_the_old_file(good_file, monkeypatch):
    path, net, X, blob = good_file
    other, _, _ = trained(seed=12)
    for target in ("fsync", "replace"):
        def fail(*args, **kwargs):
            raise OSError(f"{target} failed")
        with monkeypatch.context() as m:
            m.setattr(fio.os, target, fail)
            with pytest.raises(OSError, match=target):
                fio.save(other, path)
        assert_intact(path, net, X, blob)


def test_a_process_killed_mid_save_leaves_the_old_file(good_file):
    path, net, X, blob = good_file
    script = textwrap.dedent(f"""
        import io, os, numpy as np, fastmlp
        from fastmlp import io as fio
        real = np.savez
        def die_half_way(fh, **arrays):
            buf = io.BytesIO()
            real(buf, **arrays)
            fh.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            fh.flush()
            os._exit(3)                      # as if the power went out
        fio.np.savez = die_half_way
        fio.save(fastmlp.Network([4, 6, 3], output="softmax", seed=99), {str(path)!r})
    """)
    env = dict(os.environ)     # the child imports the fastmlp this process tests
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 3, proc.stderr
    assert open(path, "rb").read() == blob
    assert np.array_equal(fio.load(path).predict(X), net.predict(X))
    # The dead process could not clean up: its partial output is a hidden
    # temporary file, never the model's own name.
    leftovers = [f for f in files_in(path.parent) if f != path.name]
    assert all(f.startswith(".model.npz.") and f.endswith(".tmp") for f in leftovers)


# ------------------------------------------------------------ files refused
def write_npz(path, header=None, params=None, tweak=None, **extra):
    """Write an .npz like save() does, with a header dict that may be edited."""
    arrays = {}
    if header is not None:
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    if params is not None:
        arrays["params"] = params
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def parts(tmp_path):
    net, X, _ = trained(sizes=(3, 4, 2), act="sigmoid", out="sigmoid", loss="log_loss", seed=5)
    fio.save(net, tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        params = npz["params"].copy()
    return header, params, tmp_path


def edited(header, **changes):
    h = dict(header)
    for k, val in changes.items():
        if val is KeyError:
            del h[k]
        else:
            h[k] = val
    return h


def test_the_sanity_of_the_helpers(parts):
    header, params, tmp = parts
    back = fio.load(write_npz(tmp / "same.npz", header, params))
    assert np.array_equal(back.params, params)


@pytest.mark.parametrize("cut", [0, 1, 4, 30, 100, 0.5, -1, -22, -40])
def test_truncated_file(parts, cut):
    _, _, tmp = parts
    blob = open(tmp / "good.npz", "rb").read()
    n = int(len(blob) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(blob) + cut)
    (tmp / "cut.npz").write_bytes(blob[:n])
    refused(tmp / "cut.npz")


def test_every_single_byte_corruption_is_refused_or_harmless(parts):
    """Flip each byte of a good file in turn: load either refuses it with a
    ModelFileError or (a byte zip does not use, e.g. a timestamp) returns the
    very same network. Nothing else: no other exception, no silent change."""
    header, params, tmp = parts
    blob = bytearray(open(tmp / "good.npz", "rb").read())
    bad = tmp / "bad.npz"
    outcomes = {"refused": 0, "same": 0}
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            data = bytearray(blob)
            data[i] ^= flip
            bad.write_bytes(bytes(data))
            try:
                net = fio.load(bad)
            except ModelFileError as exc:
                assert str(bad) in str(exc)
                outcomes["refused"] += 1
                continue
            assert np.array_equal(net.params, params), i
            assert list(net.layer_sizes) == header["layer_sizes"] and net.loss_name == header["loss"]
            outcomes["same"] += 1
    assert outcomes["refused"] > outcomes["same"]


def test_not_an_npz(parts):
    _, params, tmp = parts
    (tmp / "empty.npz").write_bytes(b"")
    refused(tmp / "empty.npz", "empty")
    (tmp / "text.npz").write_text("hello, I am not a model\n")
    refused(tmp / "text.npz", "not a .npz archive")
    np.save(tmp / "plain.npy", params)
    refused(tmp / "plain.npy", "not a .npz archive")


def test_missing_file_and_directory_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        fio.load(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError):
        fio.load(tmp_path)


@pytest.mark.parametrize("changes,words", [
    (dict(format_version=3), ["format_version 3 is not supported", "newer"]),
    (dict(format_version=1), ["unexpected keys ['optimizer']", "version 1 has no optimizer"]),
    (dict(format_version=0), ["format_version 0 is not supported"]),
    (dict(format_version="1"), ["format_version must be an integer"]),
    (dict(format="someone.else"), ["format is 'someone.else'", "fastmlp.Network"]),
    (dict(format=KeyError), ["format is None"]),
    (dict(activation=KeyError), ["missing keys ['activation']"]),
    (dict(colour="blue"), ["unexpected keys ['colour']"]),
    (dict(layer_sizes=[3, 5, 2]), ["n_params is 26", "need 32"]),
    (dict(layer_sizes=[3, 0, 2]), ["layer_sizes must be a list of at least 2 positive integers"]),
    (dict(layer_sizes=[3]), ["layer_sizes must be"]),
    (dict(layer_sizes="3,4,2"), ["layer_sizes must be"]),
    (dict(layer_sizes=[3, 4.0, 2]), ["layer_sizes must be"]),
    (dict(layer_sizes=[3, True, 2]), ["layer_sizes must be"]),
    (dict(activation="swish"), ["activation must be one of"]),
    (dict(output="tanh"), ["output must be one of"]),
    (dict(loss="hinge"), ["loss must be one of"]),
    (dict(init="zeros"), ["init must be one of"]),
    (dict(dtype="float16"), ["dtype must be one of"]),
    (dict(dtype=["float64"]), ["dtype must be one of"]),
    (dict(l2=-0.5), ["l2 must be a finite number >= 0"]),
    (dict(l2="0.1"), ["l2 must be"]),
    (dict(l1=True), ["l1 must be"]),
    (dict(dropout=1.0), ["dropout must be a number in [0, 1); got 1.0"]),
    (dict(dropout="0.5"), ["dropout must be"]),
    (dict(seed=1.5), ["seed must be null or a non-negative integer"]),
    (dict(seed=-3), ["seed must be"]),
    (dict(n_params="26"), ["n_params must be an integer"]),
    (dict(fastmlp_version=1), ["fastmlp_version must be a string"]),
    (dict(rng_state={"bit_generator": "MT19937"}), ["rng_state must be null or a PCG64 state"]),
    (dict(loss="log_loss", output="identity"), ["not valid for", "log_loss"]),
])
def test_tampered_header(parts, changes, words):
    header, params, tmp = parts
    refused(write_npz(tmp / "t.npz", edited(header, **changes), params), *words)


def test_header_that_is_not_json_or_not_an_object(parts):
    header, params, tmp = parts
    np.savez(tmp / "a.npz", header=np.frombuffer(b"{not json", np.uint8), params=params)
    refused(tmp / "a.npz", "not valid UTF-8 JSON")
    np.savez(tmp / "b.npz", header=np.frombuffer(b"\xff\xfe", np.uint8), params=params)
    refused(tmp / "b.npz", "not valid UTF-8 JSON")
    np.savez(tmp / "c.npz", header=np.frombuffer(b"[1, 2]", np.uint8), params=params)
    refused(tmp / "c.npz", "must be a JSON object")
    text = json.dumps(header).replace('"l2": 0.01', '"l2": NaN')
    np.savez(tmp / "d.npz", header=np.frombuffer(text.encode(), np.uint8), params=params)
    refused(tmp / "d.npz", "NaN")
    np.savez(tmp / "e.npz", header=np.frombuffer(json.dumps(header).encode(), np.uint8).astype(np.int32),
             params=params)
    refused(tmp / "e.npz", "1-D uint8")


def test_params_not_matching_the_header(parts):
    header, params, tmp = parts
    refused(write_npz(tmp / "a.npz", header, params[:-1]), "'params' has shape (25,)", "(26,)")
    refused(write_npz(tmp / "b.npz", header, np.append(params, 0.0)), "shape (27,)")
    refused(write_npz(tmp / "c.npz", header, params.reshape(2, 13)), "shape (2, 13)")
    refused(write_npz(tmp / "d.npz", header, params.astype(np.float32)), "dtype float32", "float64")
    refused(write_npz(tmp / "e.npz", edited(header, dtype="float32"), params), "dtype float64", "float32")
    refused(write_npz(tmp / "f.npz", header, params.astype(np.int64)), "dtype int64")
    refused(write_npz(tmp / "g.npz", header, params.astype(np.complex128)), "dtype complex128")
    refused(write_npz(tmp / "h.npz", header, np.array(list(map(str, params)))), "dtype <U")
    nan = params.copy()
    nan[5] = np.nan
    nan[7] = -np.inf
    refused(write_npz(tmp / "i.npz", header, nan), "2 NaN or inf")


def test_a_byte_swapped_params_array_is_fine(parts):
    header, params, tmp = parts
    back = fio.load(write_npz(tmp / "be.npz", header, params.astype(">f8")))
    assert back.params.dtype == np.float64 and np.array_equal(back.params, params)


def test_header_claiming_a_huge_network_is_refused_before_allocating(parts):
    header, params, tmp = parts
    huge = edited(header, layer_sizes=[100_000, 100_000, 2], n_params=100_000 * 100_000 + 100_000 + 200_002)
    refused(write_npz(tmp / "h.npz", huge, params), "'params' has shape (26,)")


def test_extra_or_missing_arrays(parts):
    header, params, tmp = parts
    refused(write_npz(tmp / "a.npz", header, params, extra=np.zeros(2)), "unexpected 'extra'")
    refused(write_npz(tmp / "b.npz", header, None), "missing 'params'")
    refused(write_npz(tmp / "c.npz", None, params), "missing 'header'")
    refused(write_npz(tmp / "d.npz", None, None, weights=params), "missing 'header', 'params'",
            "unexpected 'weights'")
    # a member that is not an .npy array at all
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:
        zf.writestr("header.npy", open(tmp / "good.npz", "rb").read()[:10])
        zf.writestr("params.npy", b"\x93NUMPY garbage")
    (tmp / "e.npz").write_bytes(blob.getvalue())
    refused(tmp / "e.npz")


class _Boom:
    """Unpickling this creates a marker file: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_inside_the_npz_is_refused_not_run(parts):
    header, params, tmp = parts
    marker = tmp / "pwned"
    evil = np.empty(26, dtype=object)
    evil[:] = [_Boom(str(marker))] * 26
    write_npz(tmp / "a.npz", header, evil)
    refused(tmp / "a.npz", "'params'", "Python objects", "refusing to unpickle")
    write_npz(tmp / "b.npz", header, params, extra=evil)
    refused(tmp / "b.npz", "unexpected 'extra'")
    # a header made of objects
    hdr = np.array([_Boom(str(marker))], dtype=object)
    np.savez(tmp / "c.npz", header=hdr, params=params)
    refused(tmp / "c.npz", "'header'", "Python objects")
    # a bare pickle where the model should be
    (tmp / "d.npz").write_bytes(pickle.dumps(_Boom(str(marker))))
    refused(tmp / "d.npz", "not a .npz archive")
    assert not marker.exists(), "code from the file was executed"


def test_duplicate_members_are_refused(parts):
    _, _, tmp = parts
    good = zipfile.ZipFile(tmp / "good.npz")
    blob = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # zipfile warns about the duplicate
        with zipfile.ZipFile(blob, "w") as zf:
            for name in ("header.npy", "params.npy", "params.npy"):
                zf.writestr(name, good.read(name))
    (tmp / "dup.npz").write_bytes(blob.getvalue())
    refused(tmp / "dup.npz", "duplicate")


def test_metadata_round_trips_through_read_header(tmp_path):
    net, X, _ = trained()
    meta = {"columns": ["a", "b", "c", "d"], "classes": [0, 1, 2], "note": "é", "nested": {"k": 1.5}}
    fio.save(net, tmp_path / "m.npz", metadata=meta)
    header = fio.read_header(tmp_path / "m.npz")
    assert header["metadata"] == meta and header["layer_sizes"] == [4, 6, 3]
    assert np.array_equal(fio.load(tmp_path / "m.npz").predict(X), net.predict(X))
    assert "metadata" not in fio.read_header(fio.save(net, tmp_path / "plain.npz"))


@pytest.mark.parametrize("meta,exc", [([1, 2], TypeError), ({1: "a"}, TypeError),
                                      ({"x": float("nan")}, TypeError), ({"x": object()}, TypeError),
                                      ({"x": "y" * (2 << 20)}, ValueError)])
def test_bad_metadata_is_refused_before_writing(tmp_path, meta, exc):
    net, _, _ = trained()
    with pytest.raises(exc, match="metadata"):
        fio.save(net, tmp_path / "m.npz", metadata=meta)
    assert files_in(tmp_path) == []


def test_metadata_that_is_not_an_object_is_refused(parts):
    header, params, tmp = parts
    refused(write_npz(tmp / "m.npz", edited(header, metadata=[1, 2]), params), "metadata must be a JSON object")
    refused(tmp / "m.npz")
    with pytest.raises(ModelFileError):
        fio.read_header(tmp / "m.npz")


# ------------------------------------------- issue 24: memory, special files, depth
@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["deflate", "bzip2", "lzma"])
def test_compressed_members_are_refused_before_inflating(parts, method):
    header, params, tmp = parts
    good = zipfile.ZipFile(tmp / "good.npz")
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w", compression=method) as zf:
        for name in ("header.npy", "params.npy"):
            zf.writestr(name, good.read(name))
    (tmp / "small.npz").write_bytes(blob.getvalue())
    refused(tmp / "small.npz", "compressed", "uncompressed")
    # a bomb: 72 MB of zeros for a [3000, 3000, 1] network in a few hundred kB
    big = edited(header, layer_sizes=[3000, 3000, 1], n_params=3000 * 3000 + 3000 + 3001)
    npy = io.BytesIO()
    np.save(npy, np.zeros(big["n_params"]))
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w", compression=method) as zf:
        zf.writestr("header.npy", _npy_bytes(np.frombuffer(json.dumps(big).encode(), np.uint8)))
        zf.writestr("params.npy", npy.getvalue())
    assert len(blob.getvalue()) < 1_000_000
    (tmp / "bomb.npz").write_bytes(blob.getvalue())
    refused(tmp / "bomb.npz", "'header' is compressed")


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_a_member_claiming_more_than_the_file_holds_is_refused_before_allocating(parts):
    # the zip entry of 'params' claims the 3.8 GB a [20000, 24000, 1] network
    # needs (its .npy header agrees), in a file of a few hundred bytes
    header, params, tmp = parts
    sizes = [20000, 24000, 1]
    n = 20000 * 24000 + 24000 + 24000 + 1
    big = edited(header, layer_sizes=sizes, n_params=n)
    npy_head = _npy_header_only(n)
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:
        zf.writestr("header.npy", _npy_bytes(np.frombuffer(json.dumps(big).encode(), np.uint8)))
        zf.writestr("params.npy", npy_head)
    data = bytearray(blob.getvalue())
    cd = data.rindex(b"PK\x01\x02")         # the central directory entry of params.npy
    claim = len(npy_head) + 8 * n
    for off in (20, 24):                      # its compressed and uncompressed sizes
        data[cd + off:cd + off + 4] = claim.to_bytes(4, "little")
    (tmp / "claims.npz").write_bytes(bytes(data))
    refused(tmp / "claims.npz", f"'params' claims {claim} bytes", f"file of {len(data)} bytes")


def _npy_header_only(n):
    """The .npy header of a float64 array of n elements, without its data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (n,)})
    return buf.getvalue()


def test_load_holds_about_one_copy_of_the_parameters(tmp_path):
    """Issue 24 item 4: read, initialise a zeroed network, overwrite took ~3x.

    tracemalloc sees NumPy's buffers too; a child process's peak RSS would
    not do here, as Linux counts the parent's pages in a child's high-water mark.
    """
    import tracemalloc
    net = fastmlp.Network([1000, 5000, 10], seed=0)           # 40 MB of float64
    fio.save(net, tmp_path / "big.npz")
    del net
    tracemalloc.start()
    try:
        back = fio.load(tmp_path / "big.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    nbytes = back.params.nbytes
    assert back.params.ctypes.data % 64 == 0
    assert peak < 1.1 * nbytes, f"load peaked at {peak / 2**20:.1f} MiB for {nbytes / 2**20:.1f} MiB"


def test_without_an_rng_state_the_generator_continues_as_after_initialisation(parts):
    # the network is built around the file's params (not initialised); a file
    # without rng_state still gets the generator a freshly built network has
    header, params, tmp = parts
    back = fio.load(write_npz(tmp / "norng.npz", edited(header, rng_state=None), params))
    fresh = fastmlp.Network(header["layer_sizes"], seed=header["seed"])
    assert back._rng.bit_generator.state == fresh._rng.bit_generator.state
    assert np.array_equal(back.params, params)


def _load_in_thread(path, seconds=20):
    """load(path) in a thread; the exception it raised, or a failure if it blocks."""
    import threading
    outcome = {}

    def run():
        try:
            fio.load(path)
        except BaseException as exc:          # noqa: BLE001 - reported below
            outcome["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if stat.S_ISFIFO(os.stat(path).st_mode):      # let the blocked open return
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail(f"load({path}) blocked for {seconds} s")
    return outcome.get("exc")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    exc = _load_in_thread(fifo)
    assert isinstance(exc, ModelFileError), repr(exc)
    assert "FIFO" in str(exc) and str(fifo) in str(exc)
    with pytest.raises(ModelFileError, match="FIFO"):
        fio.read_header(fifo)


@pytest.mark.skipif(os.name != "posix", reason="POSIX special files")
def test_devices_and_sockets_are_refused(tmp_path):
    import socket
    exc = _load_in_thread("/dev/zero")
    assert isinstance(exc, ModelFileError) and "character device" in str(exc), repr(exc)
    path = tmp_path / "s.npz"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        exc = _load_in_thread(path)
    assert isinstance(exc, ModelFileError) and "socket" in str(exc), repr(exc)


def _nested(depth):
    meta = {}
    inner = meta
    for _ in range(depth - 1):
        inner["k"] = {}
        inner = inner["k"]
    return meta


def test_deeply_nested_metadata_is_a_clear_value_error(tmp_path):
    net, X, _ = trained()
    for depth in (5000, 101):
        with pytest.raises(ValueError, match="metadata must nest at most 100 levels"):
            fio.save(net, tmp_path / "m.npz", metadata=_nested(depth))
        assert files_in(tmp_path) == []
    fio.save(net, tmp_path / "m.npz", metadata=_nested(100))
    assert fio.read_header(tmp_path / "m.npz")["metadata"] == _nested(100)


@pytest.mark.parametrize("depth", [150, 100_000])
def test_a_file_with_deeply_nested_metadata_is_refused(parts, depth):
    header, params, tmp = parts
    text = json.dumps(header)[:-1] + ', "metadata": ' + '{"k": ' * depth + "1" + "}" * (depth + 1)
    np.savez(tmp / "deep.npz", header=np.frombuffer(text.encode(), np.uint8), params=params)
    refused(tmp / "deep.npz", "nests", "100 levels")
