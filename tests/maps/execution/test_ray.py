"""The Ray executor: a local Ray instance, and a two-node cluster started with ``ray start``
on this machine (loopback only, one CPU per node, separate temp dirs).

Every Ray process these tests start carries a marker in its environment (`MARKER`); the fixtures'
finalizers end exactly those processes, by pid, and the last test checks that none is left. A
worker is killed the same way (``kill -9`` of a process running a ``ModelWorker``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from support.paths import SRC, TESTS
from modelspace.errors import InputError
from modelspace.maps import LocalExecutor, MapStore, RayExecutor, Runtime
from modelspace.models import ModelSpec
from modelspace.probe import ProbeSet
from modelspace.space import ModelSpace

ray = pytest.importorskip("ray", reason="the Ray tests need the 'ray' extra (pip install -e '.[ray]')")

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds its Ray processes in /proc"),
              pytest.mark.slow]

#: Marks the Ray processes of this test session (inherited from `ray start` and the driver).
MARKER = f"MODELSPACE_RAY_TEST={uuid.uuid4().hex}"
METHODS = ["saliency", "gradient_x_input", "lrp"]
RAY_BIN = Path(sys.executable).with_name("ray")
#: The same for every node and driver: token authentication off (loopback only), whatever ~/.ray holds.
RAY_SETTINGS = {"RAY_AUTH_MODE": "disabled"}


# ----------------------------------------------------------------------------- processes
def _env() -> dict[str, str]:
    """The environment of Ray processes: this checkout and the toy models on the path, the marker."""
    key, value = MARKER.split("=")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), key: value,
            "RAY_USAGE_STATS_ENABLED": "0", **RAY_SETTINGS}


def _marked(title: str | None = None) -> list[int]:
    """Pids of live processes carrying this session's marker (whose command line starts with ``title``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if MARKER.encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (title is None or cmdline.startswith(title)):
            pids.append(int(entry.name))
    return pids


def _end_marked(timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every process of this session's Ray instances (by pid)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _marked():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while _marked() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _marked():
            return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(dirs: list[str]) -> str:
    """A head node and a second node on loopback, one CPU each, each with its own short temp dir (in
    ``dirs``) and its own ports: two nodes of one machine must not both take Ray's default agent ports."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    for args in (["--head", "--port", str(port), "--include-dashboard", "false"], ["--address", address]):
        dirs.append(tempfile.mkdtemp(prefix="rh" if "--head" in args else "rw", dir="/tmp"))
        ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                        "metrics-export-port", "runtime-env-agent-port")]
        done = subprocess.run([str(RAY_BIN), "start", *args, "--temp-dir", dirs[-1], "--node-ip-address", "127.0.0.1",
                               "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats", *ports],
                              env=_env(), timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert done.returncode == 0, f"ray start {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return address


# ----------------------------------------------------------------------------- data
def _specs(n: int = 4, slow: float = 0.0) -> list[ModelSpec]:
    if slow:
        return [ModelSpec(name=f"slow{i}", task=f"t{i}", source="python:toy_models:slow_cnn",
                          kwargs={"delay": slow, "seed": i}, input_size=32) for i in range(n)]
    zoo = [ModelSpec(name="cnn", task="a", source="python:toy_models:tiny_cnn", input_size=32),
           ModelSpec(name="wide", task="b", source="python:toy_models:tiny_cnn", kwargs={"width": 12}, input_size=32),
           ModelSpec(name="res", task="c", source="python:toy_models:tiny_resnet", encoder="layer2", input_size=32),
           ModelSpec(name="cnn2", task="d", source="python:toy_models:slow_cnn", kwargs={"delay": 0.0, "seed": 3},
                     input_size=32)]
    return zoo[:n]


def _probe(n: int = 12) -> ProbeSet:
    return ProbeSet.from_array(torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).numpy())


def _fit(store, specs, probe=None, ray=None, **kwargs) -> ModelSpace:
    if ray is not None:  # the fields of a RayExecutor, else the local executor
        kwargs["executor"] = RayExecutor(shard_size=4, **ray)
    kwargs = {"methods": METHODS, "baselines": (), "runtime": Runtime(batch_size=4),
              "executor": LocalExecutor(shard_size=4), "progress": False, **kwargs}
    return ModelSpace(store=store, **kwargs).fit(specs, probe if probe is not None else _probe())


def _assert_same(a: ModelSpace, b: ModelSpace) -> None:
    """``a``'s results (all of them in ``b``, the same models in any order) equal ``b``'s to 1e-6."""
    assert set(a.results_) <= set(b.results_)
    for method in a.results_:
        names = a.results_[method].names
        assert sorted(names) == sorted(b.results_[method].names)
        order = [b.results_[method].names.index(n) for n in names]
        np.testing.assert_allclose(a.results_[method].affinity, b.results_[method].affinity[np.ix_(order, order)],
                                   atol=1e-6)


def _n_shards(store: Path) -> int:
    if not (store / "manifest.sqlite").exists():
        return 0
    with MapStore(store) as s:
        return s.db.query("SELECT COUNT(*) FROM shards")[0][0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Local-executor runs: the zoo, and the slow zoo of the fault tests."""
    root = tmp_path_factory.mktemp("reference")
    return {"zoo": _fit(root / "zoo", _specs(), baselines=["linear_cka"]),
            "slow": _fit(root / "slow", _specs(3, slow=0.1), probe=_probe(16))}


@pytest.fixture
def marked_env(monkeypatch):
    """This process's environment as the Ray processes it starts should inherit it."""
    for key, value in _env().items():
        monkeypatch.setenv(key, value)


# ----------------------------------------------------------------------------- without a cluster
def test_asking_for_ray_without_it_names_the_extra(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(InputError, match=r"\[ray\]"):
        _fit(tmp_path / "s", _specs(1), ray={})


@pytest.mark.parametrize("kwargs, argument", [
    ({"executor": "dask"}, "executor"),
    ({"ray": {"gpus_per_model": -1}}, "gpus_per_model"),
    ({"ray": {"cpus_per_model": "one"}}, "cpus_per_model"),
    ({"ray": {"gpus_per_model": 0.5}}, "gpus_per_model"),  # on a CPU device
    ({"ray": {"address": 6379}}, "address"),
])
def test_bad_ray_arguments_are_named(kwargs, argument, tmp_path) -> None:
    with pytest.raises(InputError, match=argument):
        _fit(tmp_path / "s", _specs(1), **kwargs)


@pytest.mark.parametrize("extra, message", [
    (["--gpus-per-model", "0.5"], "gpus_per_model"),  # on --device cpu
    (["--cpus-per-model", "-1"], "cpus_per_model"),
    ([], r"\[ray\]"),  # with Ray hidden from the import system
])
def test_the_command_line_passes_the_ray_options(extra, message, tmp_path, monkeypatch, capsys) -> None:
    from PIL import Image

    from modelspace.cli import main

    (tmp_path / "zoo.toml").write_text('[[model]]\nname = "cnn"\nsource = "python:toy_models:tiny_cnn"\n'
                                       'input_size = 32\n')
    (tmp_path / "probe").mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "probe" / f"{i}.png")
    if not extra:
        monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["embed", str(tmp_path / "zoo.toml"), str(tmp_path / "probe"), "--store", str(tmp_path / "s"),
                 "--executor", "ray", "--quiet", *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


# ----------------------------------------------------------------------------- a local instance
def test_local_instance_equals_the_local_executor(reference, tmp_path, marked_env, capsys) -> None:
    """No address: the executor starts a local Ray instance. Baselines, a model that fails to load
    and one whose maps are all zero behave as locally; each model reports its own progress."""
    assert not ray.is_initialized()
    broken = [ModelSpec(name="broken", source="python:toy_models:failing_constructor", input_size=32),
              ModelSpec(name="dead", source="python:toy_models:dead_cnn", input_size=32)]
    try:
        space = _fit(tmp_path / "s", _specs() + broken, ray={}, baselines=["linear_cka"], progress=True)
        log = capsys.readouterr().err  # not a terminal: each bar is one line when it closes
        for name in ("cnn", "wide", "res", "cnn2", "dead"):  # 3 methods × 3 shards each
            assert re.search(rf"^modelspace: ray · {name}: 9 shards in ", log, re.M), log
        assert "ray · broken:" not in log  # it never loaded: nothing planned
        _assert_same(space, reference["zoo"])
        assert {f.model for f in space.failures_} == {"broken", "dead"}
        assert [f.method for f in space.failures_ if f.model == "broken"] == [None]
        assert {f.method for f in space.failures_ if f.model == "dead"} == set(space.results_)  # maps and activations
        # 4 good models and dead, 3 shards each; and their activations (dead's refused by the baseline)
        assert space.work_ == {"computed": 4 * 3 * 3 + 3 * 3, "reused": 0, "activations_computed": 5,
                               "activations_reused": 0}
        assert len(space.placements_) == space.work_["computed"]
    finally:
        ray.shutdown()
        _end_marked()


# ----------------------------------------------------------------------------- a two-node cluster
@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` and `ray start --address` on loopback; this process connects as the driver."""
    dirs: list[str] = []
    saved = {k: os.environ.get(k) for k in RAY_SETTINGS}
    os.environ.update(RAY_SETTINGS)  # for this process, the driver
    try:
        address = _start_cluster(dirs)
        ray.init(address=address, log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        yield address
    finally:
        ray.shutdown()
        _end_marked()
        for folder in dirs:
            shutil.rmtree(folder, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_two_nodes_share_the_zoo_and_agree_with_the_local_executor(cluster, reference, tmp_path) -> None:
    """Both nodes see the store folder (one machine), so workers write shard files into it themselves."""
    space = _fit(tmp_path / "s", _specs(), ray={"address": cluster, "shared_store": True})
    _assert_same(space, reference["zoo"])
    nodes = {p["node"] for p in space.placements_}
    assert len(nodes) == 2, f"all work ran on {nodes}"
    assert space.work_ == {"computed": 36, "reused": 0, "activations_computed": 0, "activations_reused": 0}


def test_a_killed_worker_is_retried_and_the_matrix_is_a_clean_runs(cluster, reference, tmp_path) -> None:
    done = {}
    run = threading.Thread(target=lambda: done.update(space=_fit(tmp_path / "s", _specs(3, slow=0.1), probe=_probe(16),
                                                                 ray={})))
    run.start()
    deadline = time.monotonic() + 60
    while _n_shards(tmp_path / "s") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = _marked("ray::ModelWorker")
    assert before, "no ModelWorker process to kill"
    os.kill(before[0], signal.SIGKILL)
    run.join(timeout=180)
    assert not run.is_alive()
    space = done["space"]
    assert space.failures_ == []
    _assert_same(space, reference["slow"])
    restarted = {p["pid"] for p in space.placements_} - set(before)
    assert restarted, "no shard was computed by the restarted actor"


def test_a_killed_driver_is_resumed_computing_only_what_is_missing(cluster, reference, tmp_path) -> None:
    store = tmp_path / "s"
    script = ("from test_ray import _fit, _specs, _probe\n"  # found through PYTHONPATH: this file's folder
              f"_fit({str(store)!r}, _specs(3, slow=0.1), probe=_probe(16), ray={{'address': {cluster!r}}})\n")
    env = _env()
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while _n_shards(store) < 3 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.1)
        assert driver.poll() is None, "the driver finished before it could be killed"
    finally:
        driver.kill()
        driver.wait()
    stored = _n_shards(store)
    space = _fit(store, _specs(3, slow=0.1), probe=_probe(16), ray={})
    total = 3 * 4 * 3  # 3 models, 4 shards, 3 methods
    assert space.work_["reused"] >= stored > 0
    assert space.work_["computed"] == total - space.work_["reused"]
    assert space.failures_ == []
    _assert_same(space, reference["slow"])


def test_a_local_process_and_a_ray_run_share_a_store_without_computing_a_unit_twice(cluster, reference,
                                                                                  tmp_path) -> None:
    store, results = tmp_path / "s", {}
    specs = _specs(3, slow=0.1)
    on_ray = threading.Thread(target=lambda: results.update(ray=_fit(store, specs, probe=_probe(16), ray={})))
    on_ray.start()
    deadline = time.monotonic() + 60
    while _n_shards(store) < 2 and time.monotonic() < deadline:  # the Ray run has started: join it
        time.sleep(0.05)
    # The local process takes the models from the end: the Ray run's actors start from the front.
    results["local"] = _fit(store, specs[::-1], probe=_probe(16))
    on_ray.join(timeout=180)
    computed = results["local"].work_["computed"] + results["ray"].work_["computed"]
    assert computed == 3 * 4 * 3
    assert results["ray"].work_["computed"] > 0 and results["local"].work_["computed"] > 0
    for space in results.values():
        _assert_same(space, reference["slow"])


def test_a_model_removed_meanwhile_is_a_failure_and_nothing_of_it_is_stored(cluster, tmp_path) -> None:
    """`remove` in another process while the Ray run computes a model: the driver stores nothing more of it."""
    store, done = tmp_path / "s", {}
    run = threading.Thread(target=lambda: done.update(space=_fit(store, _specs(3, slow=0.1), probe=_probe(16),
                                                                 ray={})))
    run.start()
    deadline = time.monotonic() + 60
    while _n_shards(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    with MapStore(store) as other:  # as `modelspace remove` does, from its own connection
        (first,) = [m for m in other.models() if m["n_shards"]][:1]
        other.remove_model(first["model_key"])
    run.join(timeout=180)
    assert not run.is_alive()
    space = done["space"]
    assert [(f.model, f.method) for f in space.failures_] == [(first["name"], None)]
    assert "removed from the store" in space.failures_[0].message
    assert first["name"] not in space.members_
    with MapStore(store) as s:
        for table in ("shards", "layouts", "failures", "prepared", "claims"):
            assert s.db.query(f"SELECT COUNT(*) FROM {table} WHERE model_key = ?", (first["model_key"],)) == [(0,)]
    assert not (store / "arrays" / first["model_key"][:2] / first["model_key"]).exists()


def test_disconnect_leaves_a_connection_the_caller_made(cluster, monkeypatch) -> None:
    from modelspace.maps.execution import ray as ray_executor

    # The CLI's call when its command ends. An executor's earlier connection (to the local instance of
    # an earlier test, shut down since) is not this one, the fixture's.
    monkeypatch.setattr(ray_executor, "_connection", ("a node of an earlier instance", "01000000"))
    ray_executor.disconnect()
    assert ray.is_initialized()


def test_no_ray_process_is_left(cluster) -> None:
    ray.shutdown()
    _end_marked()
    assert _marked() == []
