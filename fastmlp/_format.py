"""The model file format: encoding, atomic writing, reading and validation.

The format is described in :mod:`fastmlp.io`, the public side. This module
knows no network class: :func:`write` takes any object with a network's
attributes, and :func:`read` returns the validated header and parameters, from
which ``BaseNetwork.load`` builds the network (:func:`settings` gives its
constructor's arguments).
"""
import errno
import os
import stat

import numpy as np

from . import _format_optim, _params
from . import _validation as v
from ._version import __version__
from .errors import ModelFileError

FORMAT_NAME = "fastmlp.Network"
FORMAT_VERSION = 2          # 2: optimizer state (a file without it is written as version 1)
SUPPORTED_VERSIONS = (1, 2)

_MEMBERS = ("header", "params")
_OPTIONAL_MEMBERS = (_format_optim.MEMBER,)
_HEADER_KEYS = frozenset({
    "format", "format_version", "fastmlp_version", "layer_sizes", "activation",
    "output", "loss", "init", "dtype", "l2", "l1", "seed", "n_params", "rng_state",
})
# flat_output: written when True; dropout: when > 0; optimizer: format_version 2
_OPTIONAL_KEYS = frozenset({"metadata", "flat_output", "dropout"})
_OPTIONAL_KEYS_V2 = _OPTIONAL_KEYS | {"optimizer"}
_MAX_HEADER_BYTES = 1 << 20          # a header is a few hundred bytes (plus any metadata)
_MAX_NPY_HEADER_BYTES = 1 << 16      # numpy writes 64..4096 bytes of .npy header
MAX_METADATA_DEPTH = 100             # levels of nesting in metadata (json recurses on them)


def fspath(path):
    """A str path from a str, bytes or os.PathLike one."""
    path = os.fspath(path)
    return os.fsdecode(path) if isinstance(path, bytes) else path


# ---------------------------------------------------------------------- save
def _header_for(net, optimizer):
    seed = net.seed
    if not v.is_integer(seed):
        seed = None                  # a Generator / SeedSequence / list seed is not stored
    else:
        seed = int(seed)
    rng_state = None
    rng = getattr(net, "_rng", None)
    if rng is not None:
        state = rng.bit_generator.state
        if state.get("bit_generator") == "PCG64":
            rng_state = {
                "bit_generator": "PCG64",
                "state": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"])},
                "has_uint32": int(state["has_uint32"]),
                "uinteger": int(state["uinteger"]),
            }
    return {
        "format": FORMAT_NAME,
        "format_version": 1 if optimizer is None else FORMAT_VERSION,
        "fastmlp_version": __version__,
        "layer_sizes": [int(s) for s in net.layer_sizes],
        "activation": net.activation,
        "output": net.output,
        "loss": net.loss_name,
        "init": net.init,
        "dtype": np.dtype(net.dtype).name,
        "l2": float(net.l2),
        "l1": float(getattr(net, "l1", 0.0) or 0.0),
        "seed": seed,
        "n_params": int(net.n_params),
        "rng_state": rng_state,
    } | ({"flat_output": True} if getattr(net, "flat_output", False) else {}) \
      | ({"dropout": float(net.dropout)} if getattr(net, "dropout", 0.0) else {}) \
      | ({} if optimizer is None else {"optimizer": optimizer})


def _check_savable(net):
    _params.check_savable(net.params, net.n_params, net.dtype, "net.params",
                          " (was net.params replaced?)")
    codes = getattr(net, "_codes", None)
    if codes is not None and tuple(codes[:3]) != (v.HIDDEN_ACTIVATIONS.get(net.activation),
                                                  v.OUTPUTS.get(net.output),
                                                  v.LOSSES.get(net.loss_name)):
        raise ValueError(
            "cannot save: net.activation / net.output / net.loss_name were changed after "
            "construction and no longer describe what the network computes")


def write(net, path, metadata=None, optimizer=True):
    """Write ``net`` (checked by the caller to be a network) to ``path`` atomically,
    with its optimizer state unless ``optimizer`` is false; see :func:`fastmlp.io.save`."""
    import json          # here, not at the top: `import fastmlp` stays light (as json, secrets)

    _check_savable(net)
    if not isinstance(optimizer, (bool, np.bool_)):
        raise TypeError(f"optimizer must be True or False; got {optimizer!r}")
    entry, state = _format_optim.entry_for(net) if optimizer else (None, None)
    path = fspath(path)
    header = _header_for(net, entry)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
            raise TypeError(f"metadata must be a dict with str keys; got {type(metadata).__name__}")
        header["metadata"] = metadata
    try:
        header = json.dumps(header, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must hold only JSON values (no NaN or inf): {exc}") from None
    except RecursionError:
        raise ValueError(f"metadata must nest at most {MAX_METADATA_DEPTH} levels of dicts and "
                         "lists (load reads no deeper); got more") from None
    if nesting_depth(metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata must nest at most {MAX_METADATA_DEPTH} levels of dicts and "
                         "lists (load reads no deeper); got more")
    if len(header) > _MAX_HEADER_BYTES:
        raise ValueError(f"metadata is too large: the header would be {len(header)} bytes; "
                         f"at most {_MAX_HEADER_BYTES}")
    arrays = {"params": np.ascontiguousarray(net.params).copy()}   # a snapshot: no torn read
    if state is not None:
        arrays[_format_optim.MEMBER] = state
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = _create_temp(directory, base)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, header=np.frombuffer(header, dtype=np.uint8), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    return path


def _create_temp(directory, base):
    """A new file next to the target, created with the default permissions (umask)."""
    import secrets

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory!r}")


def _fsync_directory(directory):
    """Make the rename durable (POSIX); harmless where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---------------------------------------------------------------------- load
def read_header(path):
    """The validated header of a model file; see :func:`fastmlp.io.read_header`."""
    return read(path)[0]


def read(path):
    """The validated header (a dict), the parameters and the optimizer state
    (None when the file holds none) of a model file.

    The parameters are read straight into a new aligned array of the
    header's dtype (native byte order), the only copy of them ``load`` makes;
    so is the optimizer state.
    Raises ModelFileError for anything wrong in the file, OSError when it
    cannot be opened; see :func:`fastmlp.io.load`.
    """
    import zipfile

    path = fspath(path)
    fh = _open_regular_file(path)
    with fh:
        magic = fh.read(4)
        if magic[:2] != b"PK":
            raise ModelFileError(path, "not a .npz archive (a fastmlp model file is a zip archive "
                                       "written by fastmlp.io.save)" if magic else "the file is empty")
        fh.seek(0)
        try:
            archive = zipfile.ZipFile(fh)
        except Exception as exc:        # BadZipFile, ValueError, EOFError, OSError, ...
            raise ModelFileError(path, f"truncated or corrupted archive ({type(exc).__name__}: {exc})") from exc
        try:
            with archive:
                return _read_members(path, archive, os.fstat(fh.fileno()).st_size)
        except ModelFileError:
            raise
        except Exception as exc:
            # Everything read here comes from the file: a damaged archive can make
            # zipfile / zlib / the .npy parser raise almost anything (BadZipFile,
            # ValueError, EOFError, NotImplementedError for an unknown compression,
            # RuntimeError for an "encrypted" flag, zlib.error, struct.error, ...).
            raise ModelFileError(path, f"truncated or corrupted archive ({type(exc).__name__}: {exc})") from exc


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _open_regular_file(path):
    """``path`` opened for reading, if it is a regular file.

    A FIFO, device or socket is refused with ModelFileError before it is read
    (opening a FIFO for reading would wait for a writer; a device may never
    end). The check is made again on the opened file, which is opened without
    blocking, so a file swapped in between cannot make it wait either.
    """
    def refuse_special(mode):
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
            raise ModelFileError(path, f"it is {kind}, not a regular file; a model file is "
                                       "read from disk")

    refuse_special(os.stat(path).st_mode)          # OSError for a missing / unreadable path
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)
    try:
        refuse_special(os.fstat(fd).st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _member_info(path, archive, name, disk_size):
    """The zip entry of array ``name``: stored (not compressed), and no larger
    than the file itself, so that reading it can never inflate past what is
    on disk."""
    import zipfile

    try:
        info = archive.getinfo(name + ".npy")
    except KeyError:
        raise ModelFileError(path, f"array {name!r} is not stored as {name}.npy") from None
    if info.compress_type != zipfile.ZIP_STORED:
        method = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                  zipfile.ZIP_LZMA: "lzma"}.get(info.compress_type, f"method {info.compress_type}")
        raise ModelFileError(path, f"array {name!r} is compressed ({method}); fastmlp model files "
                                   "store their arrays uncompressed, as fastmlp.io.save writes them")
    if info.compress_size != info.file_size or info.file_size > disk_size:
        raise ModelFileError(path, f"array {name!r} claims {info.file_size} bytes "
                                   f"({info.compress_size} stored) in a file of {disk_size} bytes")
    return info


def _read_npy_header(path, member, name):
    """dtype, shape and header length of an open member, read before any data."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(member, max_header_size=_MAX_NPY_HEADER_BYTES)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(member, max_header_size=_MAX_NPY_HEADER_BYTES)
    else:
        raise ModelFileError(path, f"array {name!r} has an unknown .npy version {version}")
    if dtype.hasobject:
        raise ModelFileError(path, f"array {name!r} holds Python objects (dtype {dtype}); "
                                   "refusing to unpickle it")
    if fortran and len(shape) > 1:
        raise ModelFileError(path, f"array {name!r} is stored in Fortran order")
    return shape, dtype, member.tell()


_READ_CHUNK = 1 << 20     # bytes per read: zipfile makes a bytes object of each


def _read_into(path, member, buffer, name):
    """Fill ``buffer`` from ``member`` in bounded chunks (no whole-size temporary)."""
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        got = member.readinto(view[done:done + _READ_CHUNK])
        if not got:
            raise ModelFileError(path, f"{name!r} ends after {done} of {len(view)} bytes")
        done += got


def _count_non_finite(a):
    """NaN and inf in ``a``, counted a block at a time (no whole-size mask)."""
    step = _READ_CHUNK // a.itemsize
    return sum(int(np.count_nonzero(~np.isfinite(a[i:i + step]))) for i in range(0, a.size, step))


def _member_names(path, archive):
    """The arrays the archive holds: 'header', 'params' and perhaps 'optimizer_state'."""
    names = archive.namelist()
    if len(names) != len(set(names)):
        raise ModelFileError(path, f"the archive holds duplicate members: {sorted(names)}")
    got = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
    missing = sorted(set(_MEMBERS) - set(got))
    extra = sorted(set(got) - set(_MEMBERS) - set(_OPTIONAL_MEMBERS))
    if missing or extra:
        what = []
        if missing:
            what.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            what.append(f"unexpected {', '.join(map(repr, extra))}")
        raise ModelFileError(path, f"expected the arrays 'header' and 'params' (and "
                                   f"{_format_optim.MEMBER!r} with an optimizer state); "
                                   f"{' and '.join(what)} (found {got})")
    return set(got)


def _read_members(path, archive, disk_size):
    import json

    names = _member_names(path, archive)
    header_info = _member_info(path, archive, "header", disk_size)
    params_info = _member_info(path, archive, "params", disk_size)
    state_info = (_member_info(path, archive, _format_optim.MEMBER, disk_size)
                  if _format_optim.MEMBER in names else None)

    # header: small, uint8, JSON object
    if header_info.file_size > _MAX_HEADER_BYTES:
        raise ModelFileError(path, f"the header is {header_info.file_size} bytes; at most {_MAX_HEADER_BYTES} expected")
    with archive.open(header_info) as member:
        shape, dtype, offset = _read_npy_header(path, member, "header")
        if dtype != np.uint8 or len(shape) != 1:
            raise ModelFileError(path, f"the header must be a 1-D uint8 array; got {dtype} shape {shape}")
        if header_info.file_size != offset + shape[0]:
            raise ModelFileError(path, "the header array's size does not match its .npy header")
        raw = member.read()                  # to the end: zipfile checks the CRC there
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(path, f"the header is not valid UTF-8 JSON ({exc})") from exc
    except RecursionError:
        raise ModelFileError(path, f"the header's JSON nests too deeply (metadata may nest "
                                   f"at most {MAX_METADATA_DEPTH} levels)") from None
    header = _check_header(path, header)
    n_state = _optimizer_state_size(path, header, state_info is not None)

    # params: exactly n_params finite numbers of the header's dtype, read
    # into the aligned buffer the network will keep; the optimizer state too
    n_params = header["n_params"]
    params = _read_vector(path, archive, params_info, "params", n_params, header["dtype"],
                          f"the header's layer_sizes {header['layer_sizes']}")
    if not n_state:
        return header, params, None
    entry = header["optimizer"]
    state = _read_vector(path, archive, state_info, _format_optim.MEMBER, n_state,
                         header["dtype"], f"optimizer {entry['name']!r} "
                         f"(momentum {entry['momentum']!r}) and n_params {n_params}")
    _format_optim.check_state(path, entry, state, n_params)
    return header, params, state


def _optimizer_state_size(path, header, stored):
    """Values of the header's optimizer state (0: none), which the archive
    holds as an array (``stored``) exactly when there are any."""
    member = _format_optim.MEMBER
    if "optimizer" not in header:
        if stored:
            raise ModelFileError(path, f"the archive holds {member!r} but the header has "
                                       "no optimizer")
        return 0
    n_state = _format_optim.check_entry(path, header["optimizer"], header["n_params"])
    name = header["optimizer"]["name"]
    if stored and not n_state:
        raise ModelFileError(path, f"the archive holds {member!r} but the header's "
                                   f"optimizer {name!r} keeps no state")
    if n_state and not stored:
        raise ModelFileError(path, f"the header's optimizer {name!r} keeps {n_state} values "
                                   f"of state; the archive has no {member!r}")
    return n_state


def _read_vector(path, archive, info, name, n, dtype_name, needs):
    """Member ``name``: exactly ``n`` finite numbers of the header's dtype
    (``needs``: what in the header asks for n), read into a new aligned array."""
    want = np.dtype(dtype_name)
    with archive.open(info) as member:
        shape, dtype, offset = _read_npy_header(path, member, name)
        if dtype.kind != "f" or dtype.itemsize != want.itemsize:
            raise ModelFileError(path, f"{name!r} has dtype {dtype}; the header says {want.name}")
        if shape != (n,):
            raise ModelFileError(path, f"{name!r} has shape {shape}; {needs} need ({n},)")
        if info.file_size != offset + n * want.itemsize:
            raise ModelFileError(path, f"{name!r} is {info.file_size} bytes in the archive; "
                                       f"{offset + n * want.itemsize} expected")
        out = _params.aligned_empty(n, want)
        _read_into(path, member, out, name)
        if member.read(1):                   # (also makes zipfile check the CRC)
            raise ModelFileError(path, f"{name!r} is longer than its .npy header says")
    if not dtype.isnative:                   # a byte-swapped file is fine
        out.byteswap(inplace=True)
    bad = _count_non_finite(out)
    if bad:
        raise ModelFileError(path, f"{name!r} holds {bad} NaN or inf values")
    return out


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in the header")


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_header(path, header):
    if not isinstance(header, dict):
        raise ModelFileError(path, f"the header must be a JSON object; got {type(header).__name__}")
    fmt = header.get("format")
    if fmt != FORMAT_NAME:
        raise ModelFileError(path, f"not a fastmlp network file: format is {fmt!r}, "
                                   f"expected {FORMAT_NAME!r}")
    version = header.get("format_version")
    if not _is_int(version):
        raise ModelFileError(path, f"format_version must be an integer; got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        newer = " (written by a newer fastmlp: upgrade fastmlp to read it)" \
            if version > max(SUPPORTED_VERSIONS) else ""
        raise ModelFileError(path, f"format_version {version} is not supported; this fastmlp "
                                   f"reads {', '.join(map(str, SUPPORTED_VERSIONS))}{newer}")
    keys = set(header)
    optional = _OPTIONAL_KEYS if version == 1 else _OPTIONAL_KEYS_V2
    if not _HEADER_KEYS <= keys <= _HEADER_KEYS | optional:
        what = []
        if _HEADER_KEYS - keys:
            what.append(f"missing keys {sorted(_HEADER_KEYS - keys)}")
        if keys - _HEADER_KEYS - optional:
            what.append(f"unexpected keys {sorted(keys - _HEADER_KEYS - optional)}"
                        + (" (format_version 1 has no optimizer)"
                           if "optimizer" in keys and version == 1 else ""))
        raise ModelFileError(path, f"the header has {' and '.join(what)}")

    def need(key, ok, expected):
        if not ok(header[key]):
            raise ModelFileError(path, f"header {key} must be {expected}; got {header[key]!r}")

    need("fastmlp_version", lambda x: isinstance(x, str), "a string")
    need("layer_sizes", lambda x: isinstance(x, list) and len(x) >= 2
         and all(_is_int(s) and s >= 1 for s in x), "a list of at least 2 positive integers")
    need("activation", lambda x: isinstance(x, str) and x in v.HIDDEN_ACTIVATIONS, f"one of {sorted(v.HIDDEN_ACTIVATIONS)}")
    need("output", lambda x: isinstance(x, str) and x in v.OUTPUTS, f"one of {sorted(v.OUTPUTS)}")
    need("loss", lambda x: isinstance(x, str) and x in v.LOSSES, f"one of {sorted(v.LOSSES)}")
    need("init", lambda x: isinstance(x, str) and x in v.INITS, f"one of {sorted(v.INITS)}")
    need("dtype", lambda x: isinstance(x, str) and x in v.DTYPES, f"one of {sorted(v.DTYPES)}")
    need("l2", lambda x: _is_real(x) and np.isfinite(x) and x >= 0, "a finite number >= 0")
    need("l1", lambda x: _is_real(x) and np.isfinite(x) and x >= 0, "a finite number >= 0")
    need("seed", lambda x: x is None or (_is_int(x) and x >= 0), "null or a non-negative integer")
    need("n_params", _is_int, "an integer")
    need("rng_state", lambda x: x is None or _valid_rng_state(x), "null or a PCG64 state")
    if "flat_output" in header:
        need("flat_output", lambda x: isinstance(x, bool), "true or false")
        if header["flat_output"] and isinstance(header["layer_sizes"], list) \
                and header["layer_sizes"][-1] != 1:
            raise ModelFileError(path, "header flat_output is true but the network has "
                                       f"{header['layer_sizes'][-1]} outputs (it needs one)")
    if "dropout" in header:
        need("dropout", lambda x: _is_real(x) and 0 <= x < 1, "a number in [0, 1)")
    if "metadata" in header:
        need("metadata", lambda x: isinstance(x, dict), "a JSON object")
        if nesting_depth(header["metadata"], MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
            raise ModelFileError(path, f"header metadata nests more than {MAX_METADATA_DEPTH} "
                                       "levels of objects and arrays")
    s = header["layer_sizes"]
    n_params = _params.n_params(s)
    if header["n_params"] != n_params:
        raise ModelFileError(path, f"header n_params is {header['n_params']} but layer_sizes "
                                   f"{s} need {n_params}")
    return header


def nesting_depth(value, limit):
    """Levels of dict / list nesting in ``value`` (a flat dict is 1), counted
    without recursion and only up to ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            deepest = max(deepest, depth)
            if depth > limit:
                break
            stack.extend((child, depth + 1)
                         for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _valid_rng_state(x):
    try:
        return (isinstance(x, dict) and set(x) == {"bit_generator", "state", "has_uint32", "uinteger"}
                and x["bit_generator"] == "PCG64" and isinstance(x["state"], dict)
                and set(x["state"]) == {"state", "inc"}
                and all(_is_int(x["state"][k]) and 0 <= x["state"][k] < 2**128 for k in ("state", "inc"))
                and x["has_uint32"] in (0, 1) and _is_int(x["has_uint32"])
                and _is_int(x["uinteger"]) and 0 <= x["uinteger"] < 2**32)
    except TypeError:
        return False


def settings(header):
    """A validated header's layer sizes and the network constructor's keyword
    arguments (``l1`` and ``dropout`` only when non-zero, as before they existed)."""
    kwargs = dict(activation=header["activation"], output=header["output"], loss=header["loss"],
                  l2=header["l2"], init=header["init"], dtype=header["dtype"], seed=header["seed"])
    if header["l1"] != 0:
        kwargs["l1"] = header["l1"]
    if header.get("flat_output"):
        kwargs["flat_output"] = True
    if header.get("dropout"):
        kwargs["dropout"] = header["dropout"]
    return list(header["layer_sizes"]), kwargs
