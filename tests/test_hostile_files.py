"""Hostile and broken files: loading is bounded before it allocates, every failure is a SavingError
naming the file and the member, and saving leaves no debris and refuses what a plain write refuses.

Crafted files are built here byte by byte (zip members, .npy headers, JSON), as an attacker would.
Memory bounds are checked in a subprocess: its peak resident set while loading, minus before.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import layers, saving
from unidl.files import MAX_JSON_DEPTH, remove_stale_temporaries
from unidl.naming import UniqueNames
from unidl.saving import SavingError, WeightsFileError

# A load refused before it allocates stays far below what the crafted file declares (hundreds of MB).
REFUSED_LOAD_PEAK_MB = 60
SUBPROCESS_TIMEOUT_S = 120


def small_model(seed=0):
    model = unidl.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2)], seed=seed)
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    return model


def saved_members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path, members: dict[str, bytes], compress=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy_header(shape, dtype="<f8") -> bytes:
    """The bytes of an .npy file's magic and header declaring ``shape`` (no data follows)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def deflated_zeros_member(zf: zipfile.ZipFile, name: str, header: bytes, size: int) -> None:
    """A deflated member: ``header`` then ``size`` zero bytes, streamed (never held in memory)."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(2**20)
    with zf.open(info, "w", force_zip64=True) as member:
        member.write(header)
        for _ in range(size // len(chunk)):
            member.write(chunk)


def peak_mb_while_loading(path: Path, call: str) -> tuple[str, float]:
    """Run ``call`` (e.g. "saving.load_model(path)") in a fresh process; (exception name, peak RSS growth MB)."""
    script = textwrap.dedent(f"""
        import json, sys
        import unidl
        from unidl import saving
        from unidl.memory import proc_status_mb, reset_peak_rss
        path = {str(path)!r}
        reset_peak_rss()
        before = proc_status_mb("VmRSS")
        try:
            {call}
            outcome = "loaded"
        except Exception as exc:
            outcome = type(exc).__name__ + ": " + str(exc)[:300]
        print(json.dumps([outcome, proc_status_mb("VmHWM") - before]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    outcome, peak = json.loads(proc.stdout.strip().splitlines()[-1])
    return outcome, peak


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS needs /proc")


# ----------------------------------------------------- resource exhaustion before validation

@needs_proc
def test_a_doubly_compressed_weights_member_is_refused_before_it_inflates(tmp_path):
    path = tmp_path / "bomb.unidl"
    small_model().save(path)
    members = saved_members(path)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:  # 300 MB of zeros behind a header for the model's kernel name
        deflated_zeros_member(zf, "dense/kernel.npy", npy_header((300 * 2**20 // 8,)), 300 * 2**20)
    members["model.weights.npz"] = inner.getvalue()
    write_zip(path, members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20  # a small file...
    outcome, peak = peak_mb_while_loading(path, "saving.load_model(path)")
    assert outcome.startswith(("WeightsFileError", "WeightsMismatchError")), outcome
    assert peak < REFUSED_LOAD_PEAK_MB, f"{peak:.0f} MB peak while refusing {outcome}"


@needs_proc
def test_a_metadata_member_inflating_past_the_json_cap_is_refused(tmp_path):
    path = tmp_path / "big_json.unidl"
    small_model().save(path)
    members = saved_members(path)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if name != "metadata.json":
                zf.writestr(name, data)
        deflated_zeros_member(zf, "metadata.json", b'{"format": "unidl.model", "pad": "', 100 * 2**20)
    outcome, peak = peak_mb_while_loading(path, "saving.load_model(path)")
    assert outcome.startswith("WeightsFileError") and "metadata.json" in outcome, outcome
    assert peak < REFUSED_LOAD_PEAK_MB


@needs_proc
def test_a_huge_architecture_with_small_weights_allocates_nothing_before_the_check(tmp_path):
    path = tmp_path / "huge.unidl"
    small_model().save(path)
    members = saved_members(path)
    config = json.loads(members["config.json"])
    config["build_input_shape"] = [None, 30000]
    config["config"]["layers"][0]["config"].update(units=30000, input_shape=[30000])  # 6.7 GB of float64
    members["config.json"] = json.dumps(config).encode()
    write_zip(path, members)
    outcome, peak = peak_mb_while_loading(path, "saving.load_model(path)")
    assert outcome.startswith("WeightsMismatchError") and "(30000, 30000)" in outcome, outcome
    assert peak < REFUSED_LOAD_PEAK_MB


@needs_proc
def test_an_npy_header_declaring_gigabytes_is_refused(tmp_path):
    model = small_model()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    members = saved_members(path)
    members["dense/kernel.npy"] = npy_header((2**31,)) + b"\0" * 64  # declares 16 GiB, holds 64 bytes
    write_zip(path, members)
    with pytest.raises(WeightsFileError, match=r"declares an array of \(2147483648,\) float64"):
        saving.read_weights_file(path)
    outcome, peak = peak_mb_while_loading(path, "saving.read_weights_file(path)")
    assert outcome.startswith("WeightsFileError") and peak < REFUSED_LOAD_PEAK_MB


def test_naming_many_layers_is_linear():
    class CountingSet(set):
        lookups = 0

        def __contains__(self, item):
            CountingSet.lookups += 1
            return super().__contains__(item)

    names = UniqueNames()
    names.taken = CountingSet()
    for _ in range(8000):
        names("dense")
    assert len(names.taken) == 8000 and "dense_7999" in names.taken
    assert CountingSet.lookups < 3 * 8000  # a quadratic scan would do ~32 million


def test_a_model_of_thousands_of_layers_round_trips(tmp_path):
    model = unidl.Sequential([layers.Dense(2, input_shape=(2,))] + [layers.Dense(2) for _ in range(1999)], seed=0)
    assert model.layers[-1].name == "dense_1999"
    model.save(tmp_path / "deep.unidl")
    loaded = saving.load_model(tmp_path / "deep.unidl")
    np.testing.assert_array_equal(loaded.get_weights()[-1], model.get_weights()[-1])


# ------------------------------------------------------------ one error type, naming the member

def _file_with(tmp_path, **replace) -> Path:
    path = tmp_path / "m.unidl"
    small_model().save(path)
    members = saved_members(path)
    for name, value in replace.items():
        member = name.replace("_json", ".json")
        members[member] = value if isinstance(value, bytes) else json.dumps(value).encode()
    write_zip(path, members)
    return path


def _config(**changes):
    spec = json.loads(saved_members_cache["config.json"])
    spec.update(changes)
    return spec


saved_members_cache: dict[str, bytes] = {}


@pytest.fixture(autouse=True)
def _saved_members(tmp_path_factory):
    if not saved_members_cache:
        path = tmp_path_factory.mktemp("reference") / "m.unidl"
        small_model().save(path)
        saved_members_cache.update(saved_members(path))


def _deep(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


MALFORMED = {
    "metadata is a list": ({"metadata_json": []}, "metadata.json"),
    "format_version is a string": ({"metadata_json": {"format": "unidl.model", "format_version": "2"}},
                                   "format_version"),
    "config lacks class_name": ({"config_json": {"config": {}}}, "class_name"),
    "config lacks config": ({"config_json": {"class_name": "Sequential"}}, "'config'"),
    "bad build shape": ({"config_json": "deep"}, "config.json"),
    "compile lacks backend": ({"compile_json": {"dtype": "float32"}}, "'backend'"),
    "negative optimizer step": ({"compile_json": "negative"}, "optimizer_iterations"),
    "unknown compile key": ({"compile_json": "extra"}, "unknown keys"),
    "nesting past the cap": ({"config_json": _deep(MAX_JSON_DEPTH + 50)}, "nests deeper"),
    "not JSON": ({"config_json": b"{not json"}, "not valid JSON"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_members_raise_a_saving_error_naming_the_member(tmp_path, case):
    replace, words = MALFORMED[case]
    compile_spec = json.loads(saved_members_cache["compile.json"])
    fixes = {"deep": _config(build_input_shape=[[None, "x"]]),
             "negative": {**compile_spec, "optimizer_iterations": -1},
             "extra": {**compile_spec, "run_this": "os.system"}}
    replace = {k: fixes.get(v, v) if isinstance(v, str) else v for k, v in replace.items()}
    path = _file_with(tmp_path, **replace)
    with pytest.raises(SavingError) as err:
        saving.load_model(path)
    assert words in str(err.value)
    assert str(path) in str(err.value) or "metadata.json" in str(err.value)


def test_a_member_twice_is_refused(tmp_path):
    path = tmp_path / "twice.unidl"
    small_model().save(path)
    members = saved_members(path)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("config.json", members["config.json"])
    with pytest.raises(WeightsFileError, match=r"holds \['config.json'\] more than once"):
        saving.load_model(path)


def test_an_npz_member_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    small_model().save_weights(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(WeightsFileError, match="'notes.txt', which is not an .npy array"):
        saving.load_weights(small_model(), path)


def test_bad_graph_references_and_call_kwargs_are_saving_errors(tmp_path):
    inputs = layers.Input((4,), name="x")
    model = unidl.Model(inputs, layers.Dense(2, name="out")(inputs), seed=0)
    path = tmp_path / "f.unidl"
    model.save(path)
    members = saved_members(path)
    spec = json.loads(members["config.json"])
    spec["config"]["calls"][1]["inputs"] = {"ref": [7, 0]}
    write_zip(path, {**members, "config.json": json.dumps(spec).encode()})
    with pytest.raises(SavingError, match=r"reference \[7, 0\] names node 7"):
        saving.load_model(path)
    spec["config"]["calls"][1]["inputs"] = {"ref": [0, 0]}
    spec["config"]["calls"][1]["kwargs"] = {"unexpected": 1}
    write_zip(path, {**members, "config.json": json.dumps(spec).encode()})
    with pytest.raises(SavingError, match="unexpected"):
        saving.load_model(path)


def test_trainable_must_be_a_bool(tmp_path):
    spec = json.loads(saved_members_cache["config.json"])
    spec["config"]["layers"][0]["config"]["trainable"] = "no"
    path = _file_with(tmp_path, config_json=spec)
    with pytest.raises(SavingError, match="trainable must be True or False"):
        saving.load_model(path)
    with pytest.raises(TypeError, match="trainable must be True or False"):
        layers.Dense(2, trainable="no")


def test_saving_errors_are_exported_at_the_top_level():
    for name in ("SavingError", "WeightsFileError", "WeightsMismatchError", "UnknownObjectError"):
        assert issubclass(getattr(unidl, name), unidl.SavingError)


# ----------------------------------------------------------------------- saving hygiene

def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "w.npz"
    stale = [tmp_path / f".w.npz.dead{i}.tmp" for i in range(3)]
    for p in stale:
        p.write_bytes(b"half a file")
    live = tmp_path / ".w.npz.live.tmp"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a save in progress holds
    other = tmp_path / ".other.npz.x.tmp"
    other.write_bytes(b"another target's")
    try:
        small_model().save_weights(path)
    finally:
        os.close(fd)
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
    assert remove_stale_temporaries(str(tmp_path), "w.npz") == [str(live)]  # unlocked now


def test_a_write_failure_names_the_target(tmp_path):
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np, unidl
        from unidl import layers
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        model = unidl.Sequential([layers.Dense(100, input_shape=(100,))], seed=0)
        try:
            model.save_weights({str(tmp_path / 'big.npz')!r})
        except OSError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT_S)
    assert "File too large" in out.stdout and str(tmp_path / "big.npz") in out.stdout, out.stdout + out.stderr
    assert not list(tmp_path.glob(".big.npz.*.tmp"))


def test_saving_through_a_symlink_replaces_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    small_model(seed=1).save_weights(real)
    link.symlink_to(real)
    model = small_model(seed=2)
    model.save_weights(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    target = small_model(seed=3)
    target.load_weights(real)
    np.testing.assert_array_equal(target.get_weights()[0], model.get_weights()[0])


def test_saving_over_a_read_only_file_is_refused(tmp_path):
    path = tmp_path / "ro.npz"
    small_model(seed=1).save_weights(path)
    os.chmod(path, 0o444)
    before = path.read_bytes()
    with pytest.raises(PermissionError, match=r"ro.npz'.*read-only"):
        small_model(seed=2).save_weights(path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".ro.npz.*.tmp"))
    os.chmod(path, 0o644)
    small_model(seed=2).save_weights(path)  # writable again: saved
    assert path.read_bytes() != before
