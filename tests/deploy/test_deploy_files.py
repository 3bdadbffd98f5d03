"""The deploy files are right by construction: every command they run is a real couchfarm command,
every COUCHFARM_* variable a real setting, and the safety settings (AOF, noeviction, two dispatchers,
health by progress) are where docs/deploy.md says they are.

No Docker engine or cluster is needed: the files are parsed, the commands parsed by the CLI's own
click tree, the settings loaded by ``Settings.load``, and the dispatcher's health check is run
against ``couchfarm status --json`` output built from a real ``FarmState`` (on fakeredis).
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from couchfarm import factory
from couchfarm.deadletters import DeadLetters
from couchfarm.replication.expand import load_topology
from couchfarm.settings import ENV_PREFIX, Settings
from tests.deploy import checks
from tests.deploy.checks import DeployError, Manifest, Process

SETTINGS_VARS = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
FARM_SERVICES = {"dispatcher", "worker", "flower"}
ONE_SHOT = {"couchdb-setup", "replication-init"}
MONITORING = {"prometheus", "replication-watch"}  #: profile "monitoring" (tests/deploy/test_monitoring.py)


@pytest.fixture(autouse=True)
def _no_couchfarm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options with an envvar must not pick up this machine's COUCHFARM_* values while parsing."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)


# -- loading -----------------------------------------------------------------------------------


def image_entrypoint() -> list[str]:
    [entry] = [args for word, args in checks.final_stage() if word == "ENTRYPOINT"]
    value = json.loads(entry)
    assert isinstance(value, list), "ENTRYPOINT must be the exec form (signals reach couchfarm)"
    return value


def env_example() -> dict[str, str]:
    return checks.read_env_file(checks.ENV_EXAMPLE)


def compose() -> dict[str, Any]:
    return checks.load_compose(env_example())[0]


def manifests() -> list[Manifest]:
    return checks.load_manifests()


def one(items: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in items if m.kind == kind and (name is None or m.name == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def secret_values(items: list[Manifest]) -> dict[str, dict[str, str]]:
    """Secrets (the template's placeholders) and ConfigMaps by name: what env references resolve to."""
    out: dict[str, dict[str, str]] = {}
    for m in items:
        if m.kind in ("Secret", "ConfigMap"):
            out[m.name] = {
                k: str(v) for k, v in {**m.doc.get("data", {}), **m.doc.get("stringData", {})}.items()
            }
    return out


def all_processes() -> list[Process]:
    entry = image_entrypoint()
    return checks.compose_processes(compose(), entry) + checks.k8s_processes(manifests(), entry)


def check_all_commands(procs: list[Process]) -> list[str]:
    """Every couchfarm command parsed by the CLI; every ``python -c`` compiled with its imports."""
    paths = []
    for proc in procs:
        if proc.program == "couchfarm":
            try:
                paths.append(checks.check_couchfarm(proc.argv))
            except DeployError as exc:
                raise DeployError(f"{proc.where}: {exc}") from None
        elif proc.python_code is not None:
            check_python(proc.where, proc.python_code)
    return paths


def check_python(where: str, code: str) -> None:
    """Compiles, and what it imports exists (module, and every name taken from it)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise DeployError(f"{where}: python -c does not compile: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if importlib.util.find_spec(alias.name) is None:
                    raise DeployError(f"{where}: python -c imports {alias.name}, which does not exist")
        elif isinstance(node, ast.ImportFrom) and node.module:
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                raise DeployError(f"{where}: python -c imports {node.module}, which does not exist") from None
            for alias in node.names:
                submodule = hasattr(module, "__path__") and importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                )
                if not hasattr(module, alias.name) and not submodule:
                    raise DeployError(
                        f"{where}: python -c imports {alias.name} from {node.module}: no such name"
                    )


def bad_vars(named: list[tuple[str, str]]) -> list[str]:
    allowed = SETTINGS_VARS | checks.NON_FIELD_VARS
    return [
        f"{where}: {name}" for where, name in named if name.startswith(ENV_PREFIX) and name not in allowed
    ]


def compose_var_names(data: dict[str, Any], example: dict[str, str]) -> list[tuple[str, str]]:
    named = [(".env.example", key) for key in example]
    for name, service in data["services"].items():
        named += [(f"compose service {name}", key) for key in checks.compose_env(service)]
    return named


def k8s_var_names(items: list[Manifest]) -> list[tuple[str, str]]:
    values = secret_values(items)
    named = []
    for m in items:
        for c in checks.containers(m):
            where = f"{m.file}: {m.kind} {m.name}, container {c['name']}"
            named += [(where, e["name"]) for e in c.get("env", [])]
            for source in c.get("envFrom", []):
                ref = source.get("secretRef") or source.get("configMapRef") or {}
                named += [(f"{where}: envFrom {ref['name']}", key) for key in values.get(ref["name"], {})]
        if m.kind == "Secret":
            named += [(f"{m.file}: Secret {m.name}", key) for key in values[m.name]]
    return named


# -- the checker itself: it must fail on wrong commands (so the tests below cannot pass vacuously) --


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["couchfarm", "dispach"], "no command 'dispach'"),
        (["couchfarm", "dispatch", "--dbs", "orders"], "no option --dbs"),
        (["couchfarm", "replication", "aply", "t.yaml"], "no command 'aply'"),
        (["couchfarm", "replication", "apply"], "FILE"),
        (["couchfarm", "replication"], "needs a subcommand"),
        (["couchfarm", "status", "--json=yes"], "--json"),
        (["couchfarm", "flower", "--port", "http"], "http"),
        (["couchfarm", "worker", "--concurency", "4"], "celery worker` has no option --concurency"),
        (["couchfarm", "checkpoint", "show"], "DB"),
    ],
)
def test_checker_refuses_wrong_commands(argv: list[str], message: str) -> None:
    with pytest.raises(DeployError, match=re.escape(message)):
        checks.check_couchfarm(argv)


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["couchfarm", "dispatch"], "dispatch"),
        (["couchfarm", "worker", "-c", "4", "-Ofair", "--loglevel=INFO"], "worker"),
        (["couchfarm", "status", "--json", "--db", "orders"], "status"),
        (["couchfarm", "replication", "apply", "t.yaml", "--prune"], "replication apply"),
        (["couchfarm", "dlq", "list", "--since", "1h"], "dlq list"),
    ],
)
def test_checker_accepts_real_commands(argv: list[str], path: str) -> None:
    assert checks.check_couchfarm(argv) == path


def test_shell_scripts_are_split_into_the_commands_they_run() -> None:
    script = (
        "exec 3<>/dev/tcp/h/1 && X=1 couchfarm status --json 2>/dev/null | python -c 'print(1)' 9\n"
        "v=$(couchfarm dlq list --json); exec couchfarm dispatch"
    )
    found = [p.argv for p in checks.processes("t", ["sh", "-c", script])]
    assert ("couchfarm", "status", "--json") in found
    assert ("python", "-c", "print(1)", "9") in found
    assert ("couchfarm", "dlq", "list", "--json") in found
    assert ("couchfarm", "dispatch") in found


def test_a_wrong_command_or_variable_in_the_files_is_caught() -> None:
    """The whole-file checks below fail when a deploy file is broken (checked on mutated copies)."""
    data = copy.deepcopy(compose())
    data["services"]["dispatcher"]["command"] = ["dispach"]
    with pytest.raises(DeployError, match="dispach"):
        check_all_commands(checks.compose_processes(data, image_entrypoint()))
    data = copy.deepcopy(compose())
    data["services"]["worker"]["healthcheck"]["test"] = ["CMD-SHELL", "couchfarm status --jsn | cat"]
    with pytest.raises(DeployError, match="--jsn"):
        check_all_commands(checks.compose_processes(data, image_entrypoint()))
    data["services"]["worker"]["environment"]["COUCHFARM_COUCH_URI"] = "http://x"
    assert bad_vars(compose_var_names(data, {})) == ["compose service worker: COUCHFARM_COUCH_URI"]
    with pytest.raises(DeployError, match="imports nothere"):
        check_python("t", "import json\nfrom workers.celery_app import nothere")
    with pytest.raises(DeployError, match=re.escape("imports workers.celery_ap,")):
        check_python("t", "from workers.celery_ap import app")


# -- every command and variable ----------------------------------------------------------------


def test_every_couchfarm_command_the_files_run_exists() -> None:
    procs = all_processes()
    paths = check_all_commands(procs)
    # what the files must run (compose and Kubernetes alike): a broken collector would find nothing
    expected = {"dispatch", "worker", "flower", "replication apply", "status"}
    compose_paths = set(check_all_commands([p for p in procs if p.where.startswith("compose")]))
    k8s_paths = set(check_all_commands([p for p in procs if not p.where.startswith("compose")]))
    assert expected <= compose_paths, expected - compose_paths
    assert expected <= k8s_paths, expected - k8s_paths
    assert len(paths) >= 10


def test_every_python_snippet_compiles_and_imports_what_exists() -> None:
    snippets = [p for p in all_processes() if p.python_code is not None]
    assert len(snippets) >= 6  # setup, 3 compose health checks, 3 k8s probes
    check_all_commands(snippets)


def test_every_couchfarm_variable_is_a_setting() -> None:
    named = compose_var_names(compose(), env_example()) + k8s_var_names(manifests())
    assert len([n for _, n in named if n.startswith(ENV_PREFIX)]) >= 10
    assert bad_vars(named) == []


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_one_non_root_image_with_couchfarm_as_entrypoint() -> None:
    stage = checks.final_stage()
    assert image_entrypoint() == ["couchfarm"]
    assert [args for word, args in stage if word == "FROM"] == ["python:3.11-slim"]
    users = [args for word, args in stage if word == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    installs = [args for word, args in stage if word == "RUN" and "pip install" in args]
    assert installs and all("[test]" not in args and "-e " not in args for args in installs)


def test_dockerfile_copies_only_what_the_build_context_keeps() -> None:
    allowed = {
        line[1:].strip().rstrip("/")
        for line in checks.DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in checks.DOCKERIGNORE.read_text().splitlines(), ".dockerignore must start from nothing"
    copies = [args.split() for word, args in checks.dockerfile_instructions() if word == "COPY"]
    sources = [
        src for words in copies if not any(w.startswith("--from") for w in words) for src in words[:-1]
    ]
    assert sources
    for src in sources:
        assert src in allowed, f"COPY {src}: excluded by .dockerignore"
        assert (checks.ROOT / src).exists(), f"COPY {src}: no such file"


# -- docker-compose.yml ------------------------------------------------------------------------


def test_compose_services_and_images() -> None:
    services = compose()["services"]
    assert set(services) == {"couchdb-a", "couchdb-b", "redis", *FARM_SERVICES, *ONE_SHOT, *MONITORING}
    assert services["couchdb-a"]["image"] == services["couchdb-b"]["image"] == "couchdb:3"
    assert services["redis"]["image"].startswith("redis:7")
    for name in (*FARM_SERVICES, *ONE_SHOT, "replication-watch"):
        assert checks.is_ours(services[name]), f"{name} must run the image of deploy/Dockerfile"
        argv = checks.service_argv(services[name], image_entrypoint())
        assert argv[1:] and "--help" not in argv, f"{name} must say which process it runs"


def test_compose_couchdb_nodes_are_single_nodes_with_admin_from_env() -> None:
    services = compose()["services"]
    raw = yaml.safe_load(checks.COMPOSE.read_text())["services"]
    for name in ("couchdb-a", "couchdb-b"):
        assert raw[name]["environment"]["COUCHDB_PASSWORD"].startswith("${COUCHDB_PASSWORD")
        mounts = {v.split(":")[0]: v.split(":")[1] for v in services[name]["volumes"]}
        assert mounts["./deploy/couchdb"] == "/etc/couchfarm/couchdb"
        assert "/etc/couchfarm/couchdb/*.ini /opt/couchdb/etc/local.d/" in services[name]["entrypoint"][2]
        assert "exec tini -- /usr/local/bin/docker-entrypoint.sh" in services[name]["entrypoint"][2]
    ini = (checks.ROOT / "deploy/couchdb/10-couchfarm.ini").read_text()
    assert "[couchdb]\n" in ini and "\nsingle_node = true\n" in ini


def test_compose_redis_has_aof_and_noeviction() -> None:
    command = checks.as_argv(compose()["services"]["redis"]["command"])
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in compose()["services"]["redis"]["volumes"])


def test_compose_dispatchers_twice_and_workers_scalable() -> None:
    services = compose()["services"]
    assert services["dispatcher"]["deploy"]["replicas"] == 2
    for name in ("dispatcher", "worker"):
        assert "container_name" not in services[name]
        for port in services[name].get("ports", []):
            assert str(port).split(":")[-2] == "", f"{name}: a fixed host port stops --scale: {port}"
        env = checks.compose_env(services[name])
        assert services[name]["expose"] == [env["COUCHFARM_METRICS_PORT"]]


def test_compose_depends_on_health_and_completion() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, spec in (service.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec == {"condition": wanted}, f"{name} -> {dep}"
    assert set(services["dispatcher"]["depends_on"]) == {"redis", "replication-init"}
    assert services["replication-init"]["depends_on"] == {
        "couchdb-setup": {"condition": "service_completed_successfully"}
    }


def test_compose_flower_auth_and_persistent_state() -> None:
    raw = yaml.safe_load(checks.COMPOSE.read_text())
    flower = compose()["services"]["flower"]
    env = checks.compose_env(raw["services"]["flower"])
    assert env["COUCHFARM_FLOWER_USER"].startswith("${COUCHFARM_FLOWER_USER:?")
    assert env["COUCHFARM_FLOWER_PASSWORD"].startswith("${COUCHFARM_FLOWER_PASSWORD:?")
    argv = flower["command"]
    state = PurePosixPath(argv[argv.index("--state") + 1])
    volumes = {v.split(":")[1]: v.split(":")[0] for v in flower["volumes"]}
    assert volumes[str(state.parent)] in raw["volumes"], "Flower's state must be on a named volume"


def test_compose_env_example_lists_exactly_the_variables_compose_uses() -> None:
    example = env_example()
    _, used = checks.load_compose(example)
    assert sorted(used - set(example)) == [], "used by docker-compose.yml, missing in .env.example"
    assert sorted(set(example) - used) == [], "in .env.example, unused by docker-compose.yml"
    secrets = [k for k in example if "PASSWORD" in k]
    assert secrets and all("change-me" in example[k] for k in secrets)


def test_compose_farm_settings_load() -> None:
    services = compose()["services"]
    for name in FARM_SERVICES:
        settings = Settings.load(None, env=checks.compose_env(services[name]))
        factory.router(settings)
        assert settings.redis_url and settings.redis_url.startswith("redis://:")
        assert settings.couch_url == "http://couchdb-a:5984"


def test_compose_topology_is_mounted_valid_and_covers_the_farm_databases() -> None:
    services = compose()["services"]
    for name in ONE_SHOT:
        argv = checks.service_argv(services[name], image_entrypoint())
        target = PurePosixPath(argv[-1])
        mounts = {PurePosixPath(v.split(":")[1]): v.split(":")[0] for v in services[name]["volumes"]}
        [mount] = [m for m in mounts if target.is_relative_to(m)]
        local = checks.ROOT / mounts[mount] / target.relative_to(mount)
        assert local.parent == checks.ROOT / "deploy/topologies" and local.is_file()
        topo = load_topology(local)
        env = checks.compose_env(services[name])
        assert {node.auth.env for node in topo.nodes.values() if node.auth} <= set(env)
        assert {n.url for n in topo.nodes.values()} == {
            f"http://{s}:5984" for s in ("couchdb-a", "couchdb-b")
        }
    farm_dbs = checks.compose_env(services["dispatcher"])["COUCHFARM_DATABASES"].split(",")
    assert set(farm_dbs) <= set(topo.databases), "the farm follows databases nobody creates"


# -- health checks: the dispatcher's measures progress ------------------------------------------


def dispatcher_checks() -> list[Process]:
    found = [
        p
        for p in all_processes()
        if p.python_code is not None
        and ("dispatcher: health" in p.where or "dispatcher: readiness" in p.where)
    ]
    assert len(found) == 2  # compose healthcheck, k8s readinessProbe
    return found


def status_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str) -> str:
    """``couchfarm status --json`` output for one database in the state ``case``."""
    import fakeredis

    from couchfarm.state import FarmState
    from workers import cli_status
    from workers.cli_common import echo_json

    written_at = time.time() - (10 if case == "moving" else 4000)
    state = FarmState(fakeredis.FakeRedis(decode_responses=True), "test", clock=lambda: written_at)
    lease = state.acquire("orders", "dispatcher-1", 30)
    assert lease is not None
    state.write_checkpoint(lease, "read", "12-abc")
    state.write_checkpoint(lease, "done", "12-abc")
    state.set_lag("orders", 0 if case == "idle" else 7)
    if case == "no holder":
        state.release(lease)
    from couchfarm.ledger import Ledger
    from workers.farm import Stores

    dead = DeadLetters(state.redis, "test")
    farm = Stores(Settings(farm="test"), state, Ledger(state.redis, "test"), dead, None)  # type: ignore[arg-type]
    monkeypatch.setattr(cli_status, "stores", lambda settings: farm)
    capsys.readouterr()
    echo_json(cli_status.status_report(Settings(), ()))
    return capsys.readouterr().out


@pytest.mark.integration  # runs the health check in a Python subprocess
@pytest.mark.parametrize(
    ("case", "healthy", "message"),
    [
        ("idle", True, ""),  # caught up: an old done checkpoint is fine
        ("moving", True, ""),  # behind, but done moved 10 s ago
        ("stalled", False, "orders: 7 behind, done checkpoint still for 4000s"),
        ("no holder", False, "orders: no dispatcher holds its lease"),
    ],
)
def test_dispatcher_health_check_measures_progress(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    healthy: bool,
    message: str,
) -> None:
    report = status_json(capsys, monkeypatch, case)
    for proc in dispatcher_checks():
        code, args = proc.argv[2], list(proc.argv[3:])
        assert args == ["1800"], proc.where
        done = subprocess.run(
            [sys.executable, "-c", code, *args], input=report, capture_output=True, text=True, timeout=60
        )
        assert (done.returncode == 0) == healthy, (proc.where, done.stderr)
        assert message in done.stderr


@pytest.mark.integration  # runs the health check in a Python subprocess
def test_dispatcher_health_check_fails_when_status_fails() -> None:
    for proc in dispatcher_checks():
        done = subprocess.run(
            [sys.executable, "-c", proc.argv[2], *proc.argv[3:]], input="", capture_output=True, timeout=60
        )
        assert done.returncode != 0


# -- Kubernetes --------------------------------------------------------------------------------


def test_k8s_manifests_kinds_and_kustomization() -> None:
    items = manifests()
    kinds = sorted({m.kind for m in items})
    assert kinds == sorted(
        {
            "Namespace",
            "ConfigMap",
            "Secret",
            "StatefulSet",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "Job",
            "TriggerAuthentication",
            "ScaledObject",
            "PersistentVolumeClaim",
            "Kustomization",
        }
    )
    kustomization = one(items, "Kustomization").doc
    resources = set(kustomization["resources"])
    files = {p.name for p in checks.K8S.glob("*.yaml")}
    assert resources <= files
    assert files - resources == {"kustomization.yaml", "secret.template.yaml"}
    assert kustomization["namespace"] == one(items, "Namespace").name


def test_k8s_secret_is_a_template_with_obviously_fake_values() -> None:
    secret = one(manifests(), "Secret", "couchfarm-secrets")
    assert secret.file == "secret.template.yaml"
    assert secret.doc["stringData"] and all("change-me" in v for v in secret.doc["stringData"].values())


def test_k8s_every_reference_resolves() -> None:
    """Secret/ConfigMap keys exist, probe ports name container ports, Services select pods."""
    items = manifests()
    values = secret_values(items)
    pvcs = {m.name for m in items if m.kind == "PersistentVolumeClaim"}
    for m in items:
        spec = checks.pod_spec(m)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in values
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in pvcs
        for c in checks.containers(m):
            checks.k8s_env(c, values)  # raises on a missing key
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in checks.PROBES:
                for how in ("tcpSocket", "httpGet"):
                    port = (c.get(probe) or {}).get(how, {}).get("port")
                    assert port is None or port in ports, f"{m.name} {probe} port {port}"
    labels = [m.doc["spec"]["template"]["metadata"]["labels"] for m in items if checks.pod_spec(m)]
    for svc in (m for m in items if m.kind == "Service"):
        selector = svc.doc["spec"]["selector"].items()
        assert any(selector <= lab.items() for lab in labels), f"Service {svc.name} selects no pods"


def farm_containers(items: list[Manifest]) -> list[tuple[Manifest, dict[str, Any]]]:
    return [(m, c) for m in items for c in checks.containers(m) if checks.k8s_is_ours(c)]


def config_file(items: list[Manifest], tmp_path: Path) -> Path:
    config = one(items, "ConfigMap", "couchfarm-config").doc["data"]["couchfarm.yaml"]
    path = tmp_path / "couchfarm.yaml"
    path.write_text(config)
    return path


def test_k8s_configmap_settings_are_settings_and_load(tmp_path: Path) -> None:
    items = manifests()
    path = config_file(items, tmp_path)
    keys = set(yaml.safe_load(path.read_text()))
    assert keys <= set(Settings.model_fields), keys - set(Settings.model_fields)
    values = secret_values(items)
    for m, c in farm_containers(items):
        env = checks.k8s_env(c, values)
        mount = PurePosixPath(env["COUCHFARM_CONFIG"]).parent
        [volume] = [v["name"] for v in c["volumeMounts"] if PurePosixPath(v["mountPath"]) == mount]
        [source] = [v for v in checks.pod_spec(m)["volumes"] if v["name"] == volume]
        assert source["configMap"]["name"] == "couchfarm-config", m.name
        settings = Settings.load(path, env={**env, "COUCHFARM_CONFIG": str(path)})
        factory.router(settings)
        if "metrics" in {p["name"] for p in c.get("ports", [])}:
            [port] = [p["containerPort"] for p in c["ports"] if p["name"] == "metrics"]
            assert settings.metrics_port == port, m.name
        if m.kind != "Job":
            assert settings.redis_url == "redis://:change-me@redis:6379/0", m.name


def test_k8s_redis_statefulset_has_aof_noeviction_and_a_volume() -> None:
    redis = one(manifests(), "StatefulSet", "redis")
    [container] = checks.containers(redis)
    args = checks.as_argv(container.get("command")) + checks.as_argv(container["args"])
    pairs = dict(zip(args[0::2], args[1::2], strict=False))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    [claim] = redis.doc["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]


def runs(container: dict[str, Any], *path: str) -> bool:
    argv = [
        *(checks.as_argv(container.get("command")) or image_entrypoint()),
        *checks.as_argv(container.get("args")),
    ]
    return argv[: 1 + len(path)] == ["couchfarm", *path]


def test_k8s_dispatchers_two_replicas_with_disruption_budget_and_probes() -> None:
    items = manifests()
    [(deployment, container)] = [(m, c) for m, c in farm_containers(items) if runs(c, "dispatch")]
    assert deployment.kind == "Deployment" and deployment.doc["spec"]["replicas"] == 2
    assert {"livenessProbe", "readinessProbe"} <= set(container)
    pdb = one(items, "PodDisruptionBudget")
    labels = deployment.doc["spec"]["template"]["metadata"]["labels"]
    assert pdb.doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.doc["spec"]["minAvailable"] == 1


def test_k8s_workers_scaled_by_keda_on_the_celery_list() -> None:
    items = manifests()
    [(deployment, container)] = [(m, c) for m, c in farm_containers(items) if runs(c, "worker")]
    assert "replicas" not in deployment.doc["spec"], "KEDA owns the worker replicas"
    assert "livenessProbe" in container
    scaled = one(items, "ScaledObject")
    assert scaled.doc["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled.doc["spec"]["scaleTargetRef"]["name"] == deployment.name
    assert scaled.doc["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    [trigger] = scaled.doc["spec"]["triggers"]
    assert trigger["type"] == "redis"
    farm = yaml.safe_load(one(items, "ConfigMap", "couchfarm-config").doc["data"]["couchfarm.yaml"])["farm"]
    assert trigger["metadata"]["listName"] == f"couchfarm.{farm}"
    env = checks.k8s_env(container, secret_values(items))
    assert env[trigger["metadata"]["addressFromEnv"]] == "redis:6379"
    auth = one(items, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [ref] = auth.doc["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password"
    assert ref["key"] in secret_values(items)[ref["name"]]
    # the list KEDA watches is the queue the workers of that farm consume
    from workers.farm import queue_name

    assert queue_name(Settings(farm=farm)) == trigger["metadata"]["listName"]


def test_k8s_flower_has_auth_persistent_state_and_a_service() -> None:
    items = manifests()
    [(deployment, container)] = [(m, c) for m, c in farm_containers(items) if runs(c, "flower")]
    names = {e["name"] for e in container["env"]}
    assert "COUCHFARM_FLOWER_PASSWORD" in names
    args = container["args"]
    state = PurePosixPath(args[args.index("--state") + 1])
    [mount] = [v for v in container["volumeMounts"] if PurePosixPath(v["mountPath"]) == state.parent]
    [volume] = [v for v in checks.pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    assert "persistentVolumeClaim" in volume
    assert any(m.kind == "Service" and m.name == "couchfarm-flower" for m in items)


def test_k8s_job_applies_a_valid_topology(tmp_path: Path) -> None:
    items = manifests()
    [(job, container)] = [(m, c) for m, c in farm_containers(items) if runs(c, "replication", "apply")]
    assert job.kind == "Job"
    target = PurePosixPath(container["args"][-1])
    [mount] = [v for v in container["volumeMounts"] if target.is_relative_to(v["mountPath"])]
    [volume] = [v for v in checks.pod_spec(job)["volumes"] if v["name"] == mount["name"]]
    data = one(items, "ConfigMap", volume["configMap"]["name"]).doc["data"]
    path = tmp_path / target.name
    path.write_text(data[target.name])
    topo = load_topology(path)
    env = {e["name"] for e in container["env"]}
    assert {node.auth.env for node in topo.nodes.values() if node.auth} <= env


def test_click_tree_is_the_installed_cli() -> None:
    """The checker walks the same command object the ``couchfarm`` entry point runs."""
    from workers import cli as cli_module

    assert checks.cli_root() is cli_module.cli
    assert isinstance(cli_module.cli.commands["replication"], click.Group)


def test_compose_and_k8s_run_the_same_health_checks() -> None:
    """One check per process: the compose health check and the Kubernetes probe must not drift."""
    procs = [p for p in all_processes() if p.python_code is not None]
    for process, probe in (
        ("dispatcher", "readinessProbe"),
        ("worker", "livenessProbe"),
        ("flower", "readinessProbe"),
    ):
        [in_compose] = [p.python_code for p in procs if p.where == f"compose service {process}: healthcheck"]
        [in_k8s] = [p.python_code for p in procs if p.where.endswith(f"container {process}: {probe}")]
        assert in_compose == in_k8s, process


def test_compose_couchdb_setup_creates_every_topology_database_on_every_node(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The setup snippet, run in-process with the real topology and credentials, clients faked."""
    from couchfarm.replication import endpoints

    setup = compose()["services"]["couchdb-setup"]
    [proc] = [p for p in all_processes() if p.where == "compose service couchdb-setup"]
    created: list[tuple[str, str]] = []

    class FakeClient:
        def __init__(self, node: str) -> None:
            self.node = node

        def create_db(self, db: str) -> bool:
            created.append((self.node, db))
            return db == "orders"

    def fake_clients(topo: Any, creds: Any) -> dict[str, FakeClient]:
        assert all(c is not None and c.secret == "change-me" for c in creds.values())
        return {name: FakeClient(name) for name in topo.nodes}

    monkeypatch.setattr(endpoints, "node_clients", fake_clients)
    for key, value in checks.compose_env(setup).items():
        monkeypatch.setenv(key, value)
    topology = checks.ROOT / "deploy/topologies" / PurePosixPath(proc.argv[3]).name
    monkeypatch.setattr(sys, "argv", ["-c", str(topology)])
    exec(compile(proc.argv[2], "<couchdb-setup>", "exec"), {"__name__": "__main__"})
    assert sorted(created) == sorted(
        (n, db) for n in ("couchdb-a", "couchdb-b") for db in ("orders", "customers")
    )
    assert "couchdb-b customers exists" in capsys.readouterr().out
