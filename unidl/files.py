"""Files: atomic writes, and the two array formats unidl reads and writes (npz, safetensors).

A leaf module: it knows bytes, paths and NumPy arrays, never a model.

Writing
    ``atomic_write(path)`` gives a temporary file next to ``path`` that becomes
    ``path`` only once everything is written, flushed and fsync'ed; the
    directory is fsync'ed after the rename. A crash at any point leaves the old
    file or the new one, never a mix. The writer holds an advisory lock on its
    temporary file, so the next save of the same target can tell the
    temporaries of killed saves (unlocked) from those of live ones and removes
    the former. A symlink target is followed (the file it points to is
    replaced, as ``open(path, "w")``, NumPy and Keras do); a read-only target
    is refused as a plain write would be; a failed write names the target.

Reading, bounded
    Files may be hostile. Before anything is allocated, every declared size is
    checked against what the caller expects and against the bytes actually
    present: zip members against ``max_bytes`` and a compression-ratio cap, each
    ``.npy`` header's shape against its member's size (and the expected shape),
    JSON against a size and nesting cap. Every failure is a ``WeightsFileError``
    naming the file and the member.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np

# zipfile, tempfile, glob and shutil are imported in the functions that use them:
# `import unidl` must stay fast, and most programs never save anything.

# Fixed member timestamps make saving the same model twice give the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# A deflated member may not inflate more than this (zlib's limit is ~1032:1 on zeros).
MAX_COMPRESSION_RATIO = 1100
# JSON members (configs, metadata): size and nesting caps, far above any real model's.
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 200
# An .npy header is a few hundred bytes; more is not a weights file.
MAX_NPY_HEADER_BYTES = 64 * 2**10
CHECKSUM_KEY = "unidl_sha256"


class SavingError(ValueError):
    """A weights or model file cannot be written or read as asked."""


class WeightsFileError(SavingError):
    """The file is missing, truncated, corrupted, too large for what it declares, or not a weights/model file."""


# ------------------------------------------------------------------ atomic writes

def check_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{os.fspath(path)!r} exists; pass overwrite=True to replace it")


def _write_target(path: str) -> str:
    """The file a write to ``path`` replaces: a symlink is followed, as a plain ``open(path, "w")`` does."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory")
    # A plain write refuses a file its user may not write; an atomic replace would not (it needs the
    # directory only), so check. A file without its owner's write bit is read-only for root too.
    if os.path.exists(target) and (not os.access(target, os.W_OK) or not os.stat(target).st_mode & 0o200):
        raise PermissionError(f"cannot save to {path!r}: the file is read-only (make it writable, or save "
                              "under another name)")
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success it atomically becomes ``path``.

    The data is flushed and fsync'ed before ``os.replace`` (so the rename never
    publishes a file whose bytes are not on disk yet), and the directory is
    fsync'ed after it (so the rename itself survives a power loss). On any
    error the temporary file is removed and ``path`` is untouched.
    """
    import tempfile

    path = os.fspath(path)
    target = _write_target(path)
    directory, base = os.path.split(os.path.abspath(target))
    remove_stale_temporaries(directory, base)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        _lock(fd)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            # mkstemp creates the file 0600; give it the mode a plain open() would have.
            os.chmod(tmp, new_file_mode(target))
            os.replace(tmp, target)  # still locked: a concurrent cleanup never takes a live temporary
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.filename is None:  # e.g. "[Errno 27] File too large" from a write: say which file
            if exc.errno is not None:
                raise type(exc)(exc.errno, f"{exc.strerror} (while saving to {path!r})", path) from exc
            raise type(exc)(f"{exc} (while saving to {path!r})") from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def _lock(fd: int) -> None:
    """An advisory lock held while the temporary file is written (released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no cleanup of stale temporaries there
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(directory: str, base: str) -> list[str]:
    """Remove temporaries of earlier saves of ``base`` whose writer died (killed mid-save).

    A live writer holds a lock on its temporary file, so only unlocked ones are removed.
    Returns the removed paths.
    """
    import glob
    try:
        import fcntl
    except ImportError:
        return []
    removed = []
    for candidate in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(base)}.*.tmp")):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: a save in progress
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(candidate)
            removed.append(candidate)
    return removed


def new_file_mode(path: str) -> int:
    """The mode a plain ``open(path, "w")`` would leave: the existing file's, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~umask()


def umask() -> int:
    """The process umask, read without ``os.umask()`` (which sets it process-wide, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened (nor need to be)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_directory(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Run ``write(tmp)`` on a new directory beside ``path``, then rename it to ``path``.

    An existing ``path`` is moved aside first and removed last (it is restored if
    the rename fails), so ``path`` never holds a mix of old and new files.
    """
    import shutil
    import tempfile

    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"cannot write {path!r}: directory {parent!r} does not exist")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"cannot write {path!r}: it is a file, and this format writes a directory")
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{base}.", suffix=".tmp")
    old = None
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it 0700; give it a plain mkdir's mode
        write(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{base}.", suffix=".old")
            os.replace(path, old)  # onto an empty directory: allowed
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
                old = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    fsync_directory(parent)


# ----------------------------------------------------------------- zip archives

def zip_info(name: str):
    import zipfile
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def open_zip(data: bytes, source: str):
    """A ZipFile over ``data``; a WeightsFileError naming ``source`` when it is not one."""
    import zipfile
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:
        raise WeightsFileError(f"{source} is truncated or corrupted, or not a zip archive: "
                               f"{type(exc).__name__}: {exc}") from exc


def check_member(info, source: str, max_bytes: int | None) -> None:
    """Refuse a zip member whose declared size is over ``max_bytes`` or inflates suspiciously."""
    where = f"{source}, member {info.filename!r}"
    if max_bytes is not None and info.file_size > max_bytes:
        raise WeightsFileError(f"{where} declares {info.file_size:,} bytes, more than the {max_bytes:,} it can "
                               "hold; the file is corrupted or crafted")
    if info.compress_type != 0 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise WeightsFileError(f"{where} inflates {info.file_size:,} bytes from {info.compress_size:,} (over "
                               f"{MAX_COMPRESSION_RATIO}:1): refused as a decompression bomb")


def read_member(zf, name: str, source: str, max_bytes: int | None) -> bytes:
    """One member's bytes (its CRC-32 checked), bounded by ``max_bytes``."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsFileError(f"{source} lacks {name}") from None
    check_member(info, source, max_bytes)
    try:
        return zf.read(info)
    except Exception as exc:
        raise WeightsFileError(f"{source} is corrupted ({name}): {type(exc).__name__}: {exc}") from exc


def read_json_member(zf, name: str, source: str) -> Any:
    """A JSON member, bounded in size and nesting."""
    return parse_json(read_member(zf, name, source, MAX_JSON_BYTES), f"{source}, member {name!r}")


def parse_json(data: bytes, where: str) -> Any:
    try:
        value = json.loads(data)
    except RecursionError:
        raise WeightsFileError(f"{where} nests deeper than JSON can be read") from None
    except ValueError as exc:
        raise WeightsFileError(f"{where} is not valid JSON ({exc})") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise WeightsFileError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels; no unidl file does")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


# ----------------------------------------------------------------- npz archives

def write_npz(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """The archive ``np.savez`` writes, built by hand to refuse pickles and fix timestamps."""
    import zipfile
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(zip_info(f"{name}.npy"), "w", force_zip64=True) as member:
                # np.require, not np.ascontiguousarray: that one turns a scalar (shape ()) into shape (1,)
                np.lib.format.write_array(member, np.require(array, requirements="C"), allow_pickle=False)


def _npy_header(member, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                  (3, 0): np.lib.format.read_array_header_2_0}.get(version)
        if header is None:
            raise ValueError(f"unknown .npy version {version}")
        shape, fortran, dtype = header(member, max_header_size=MAX_NPY_HEADER_BYTES)
    except Exception as exc:
        raise WeightsFileError(f"{where} is not a valid .npy array: {type(exc).__name__}: {exc}") from exc
    if dtype.hasobject:
        raise WeightsFileError(f"{where} holds Python objects (a pickle); unidl reads numbers only")
    return tuple(shape), fortran, dtype


def read_npz(data: bytes, source: str, expected: Mapping[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """name -> array from an ``.npz`` archive in ``data``, reading nothing unbounded.

    ``expected`` (name -> shape) bounds each array by what the caller will accept: an
    array of another shape, or a name not expected, is returned as a zero-copy
    placeholder of its declared shape (so the caller can report the mismatch) and
    its data is never read. Without ``expected``, each array is bounded by its
    member's declared size, itself bounded by the compression-ratio cap.
    """
    zf = open_zip(data, source)
    arrays = {}
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise WeightsFileError(f"{source} holds {info.filename!r}, which is not an .npy array; not a "
                                       "weights archive")
            name = info.filename[:-4]
            if name in arrays:
                raise WeightsFileError(f"{source} holds {name!r} twice")
            arrays[name] = _read_npy_member(zf, info, f"{source}, member {info.filename!r}", expected, name)
    return arrays


def _read_npy_member(zf, info, where: str, expected, name: str) -> np.ndarray:
    check_member(info, where, None)
    try:
        with zf.open(info) as member:
            shape, fortran, dtype = _npy_header(member, where)
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size > info.file_size:
                raise WeightsFileError(f"{where} declares an array of {shape} {dtype} ({size:,} bytes) in a "
                                       f"member of {info.file_size:,} bytes; the file is truncated or crafted")
            unwanted = expected is not None and (name not in expected or tuple(expected[name]) != shape)
            if unwanted or dtype.kind not in "fiub":
                return np.broadcast_to(np.zeros((), dtype), shape)  # a placeholder: shape only, no data
            raw = member.read(size)
            if len(raw) != size:
                raise WeightsFileError(f"{where} ends before its {size:,} bytes of data")
            member.read()  # to the end: zipfile checks the member's CRC-32 there
    except WeightsFileError:
        raise
    except Exception as exc:
        raise WeightsFileError(f"{where} is truncated or corrupted: {type(exc).__name__}: {exc}") from exc
    array = np.frombuffer(raw, dtype=dtype)
    return (array.reshape(shape[::-1]).T if fortran else array.reshape(shape)).copy()


# ------------------------------------------------------------------ safetensors

def _safetensors():
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError("reading and writing .safetensors files needs the safetensors package; install it "
                          "with: pip install safetensors   (or save to a .npz path instead)") from exc
    return safetensors.numpy


def require_safetensors() -> None:
    """Fail with the install hint before any file is created."""
    _safetensors()


def tensor_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and little-endian bytes, in name order."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str.lstrip('<>=|')}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def write_safetensors(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """A safetensors file whose metadata carries a SHA-256 of the tensors (the format has no checksum)."""
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    f.write(st.save(arrays, metadata={"format": "np", CHECKSUM_KEY: tensor_digest(arrays)}))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    # The header is an 8-byte little-endian length and then JSON; "__metadata__" is optional.
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_JSON_BYTES):
        raise ValueError(f"header of {size:,} bytes in a file of {len(data):,}")
    header = parse_json(data[8:8 + size], "the safetensors header")
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.get("__metadata__") or {}
    return metadata if isinstance(metadata, dict) else {}


def read_safetensors(data: bytes, source: str) -> dict[str, np.ndarray]:
    st = _safetensors()
    try:
        metadata = _safetensors_metadata(data)
        arrays = st.load(data)
    except Exception as exc:  # SafetensorError, JSON errors on a damaged header...
        raise WeightsFileError(f"{source} is truncated or corrupted, or not a safetensors file: "
                               f"{type(exc).__name__}: {exc}") from exc
    expected = metadata.get(CHECKSUM_KEY)
    # Files written by other tools carry no checksum: they load unchecked, as everywhere else.
    if expected is not None and tensor_digest(arrays) != expected:
        raise WeightsFileError(f"{source} is corrupted: its tensors do not match the SHA-256 checksum "
                               "stored in its header")
    return arrays


def is_safetensors_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(".safetensors")


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    """The whole file (one read: every array then comes from the same version of it)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path!r}") from None
    if not data:
        raise WeightsFileError(f"{what} {path!r} is empty (0 bytes)")
    return data
