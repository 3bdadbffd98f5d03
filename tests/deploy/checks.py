"""Readers of the deploy files and a checker of the commands they run, for tests/deploy.

Every process a container starts (compose ``entrypoint``/``command``, Kubernetes ``command``/``args``,
health checks and probes, including what ``sh -c`` scripts and pipelines run) is collected as an
argv. ``check_couchfarm`` parses a ``couchfarm ...`` argv with the real click command tree: unknown
commands, unknown options, missing arguments and bad values fail as they would at run time, and the
options ``couchfarm worker`` hands to Celery are checked against Celery's own ``worker`` command.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
#: COUCHFARM_* variables that are not settings fields but are read by couchfarm (documented)
NON_FIELD_VARS = {"COUCHFARM_CONFIG", "COUCHFARM_POUCHDB_BIN"}
#: subcommands whose unknown options go to another click command
PASSTHROUGH = {"worker": "celery worker"}


class DeployError(AssertionError):
    """A deploy file runs a command, or sets a variable, that couchfarm does not have."""


@dataclass(frozen=True)
class Process:
    where: str  #: e.g. "compose service dispatcher: healthcheck"
    argv: tuple[str, ...]

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name if self.argv else ""

    @property
    def python_code(self) -> str | None:
        """The code of ``python -c CODE``, else None."""
        if self.program.startswith("python") and len(self.argv) > 2 and self.argv[1] == "-c":
            return self.argv[2]
        return None


# -- the command line ------------------------------------------------------------------------------


@functools.cache
def cli_root() -> click.Group:
    from workers.cli import _register, cli

    _register()
    return cli


@functools.cache
def celery_worker() -> click.Command:
    from celery.bin.worker import worker

    return worker


def option_names(cmd: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in cmd.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def options_used(args: Sequence[str]) -> list[str]:
    """The option names in ``args`` (``--x=1`` gives ``--x``; ``-c4`` gives ``-c``), up to ``--``."""
    found = []
    for token in args:
        if token == "--":
            break
        if token.startswith("--"):
            found.append(token.split("=", 1)[0])
        elif token.startswith("-") and len(token) > 1 and not token[1:2].isdigit():
            found.append(token[:2])
    return found


def check_couchfarm(argv: Sequence[str]) -> str:
    """Parse ``couchfarm ARGS`` like the CLI would; returns the command path ("replication apply")."""
    shown = " ".join(argv)
    cmd: click.Command = cli_root()
    ctx = click.Context(cmd, info_name="couchfarm")
    args, path = list(argv[1:]), []
    while isinstance(cmd, click.Group):
        where = " ".join(["couchfarm", *path])
        if not args:
            raise DeployError(f"`{shown}`: `{where}` needs a subcommand")
        token = args.pop(0)
        sub = cmd.commands.get(token)
        if sub is None:
            known = ", ".join(sorted(cmd.commands))
            raise DeployError(f"`{shown}`: `{where}` has no command {token!r} (it has: {known})")
        path.append(token)
        cmd = sub
        ctx = click.Context(cmd, info_name=token, parent=ctx)
    name = " ".join(path)
    passthrough = bool(cmd.context_settings.get("ignore_unknown_options"))
    if passthrough and name not in PASSTHROUGH:
        raise DeployError(
            f"`couchfarm {name}` passes unknown options on, to a command this test does not know"
        )
    if not passthrough:
        unknown = [o for o in options_used(args) if o not in option_names(cmd)]
        if unknown:
            raise DeployError(f"`{shown}`: `couchfarm {name}` has no option {', '.join(unknown)}")
    try:
        parsed = cmd.make_context(path[-1], list(args), parent=ctx)
    except click.ClickException as exc:
        raise DeployError(f"`{shown}`: {exc.format_message()}") from None
    if passthrough:
        rest = [str(a) for value in parsed.params.values() if isinstance(value, tuple) for a in value]
        unknown = [o for o in options_used(rest) if o not in option_names(celery_worker())]
        if unknown:
            raise DeployError(f"`{shown}`: `{PASSTHROUGH[name]}` has no option {', '.join(unknown)}")
    return name


# -- processes inside shell scripts ------------------------------------------------------------

SEPARATOR_CHARS = set("|&;()\n")  #: a token of only these ends a simple command (&&, ||, ;, |, &&\n ...)
REDIRECT = re.compile(r"^(?:[<>]+&?|&?[<>]+)$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script (pipelines, lists and unquoted ``$( )`` split apart),
    without redirections, leading variable assignments or ``exec``. Command substitutions inside
    double quotes stay one word: deploy files do not run couchfarm that way."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    skip = False
    for token in lexer:
        if skip:
            skip = False
        elif set(token) <= SEPARATOR_CHARS:
            commands.append([])
        elif REDIRECT.match(token):
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()
            skip = True
        else:
            commands[-1].append(token)
    out = []
    for words in commands:
        while words and (ASSIGNMENT.match(words[0]) or words[0] == "exec"):
            words = words[1:]
        if words:
            out.append(words)
    return out


def processes(where: str, argv: Sequence[str]) -> Iterator[Process]:
    """``argv`` and, for ``sh -c``/``bash -c`` and ``tini --``, what it runs in turn."""
    argv = [str(a) for a in argv]
    if not argv:
        return
    program = Path(argv[0]).name
    if program in ("sh", "bash") and "-c" in argv[1:]:
        script = argv[argv.index("-c") + 1]
        for words in shell_commands(script):
            yield from processes(where, words)
    elif program == "tini" and "--" in argv:
        yield from processes(where, argv[argv.index("--") + 1 :])
    else:
        yield Process(where, tuple(argv))


# -- compose -----------------------------------------------------------------------------------

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise DeployError(f"{path.name}: not KEY=VALUE: {line!r}")
            env[key.strip()] = value.strip()
    return env


def interpolate(value: Any, env: Mapping[str, str], used: set[str]) -> Any:
    """Compose's interpolation (``$$``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``${X:+r}``)
    applied to every string of a parsed compose file; names seen are added to ``used``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        used.add(name)
        current, op, arg = env.get(name), match["op"], match["arg"] or ""
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":+", "+"):
            return arg if (current if op == ":+" else current is not None) else ""
        if not current and (op in (":?", "?") or current is None):
            raise DeployError(f"${{{name}}} is used by docker-compose.yml but not set in .env.example")
        return current or ""

    return VARIABLE.sub(substitute, value)


def load_compose(env: Mapping[str, str]) -> tuple[dict[str, Any], set[str]]:
    """docker-compose.yml parsed and interpolated with ``env``; and the variable names it uses."""
    used: set[str] = set()
    data = interpolate(yaml.safe_load(COMPOSE.read_text()), env, used)
    return data, used


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def healthcheck_argv(test: Any) -> list[str]:
    if isinstance(test, str):
        return ["sh", "-c", test]
    if test[0] == "CMD":
        return [str(v) for v in test[1:]]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", str(test[1])]
    return []


def is_ours(service: Mapping[str, Any]) -> bool:
    """Whether a compose service runs the image of deploy/Dockerfile."""
    build = service.get("build")
    return isinstance(build, dict) and Path(build.get("dockerfile", "")) == Path("deploy/Dockerfile")


def service_argv(service: Mapping[str, Any], entrypoint: Sequence[str]) -> list[str]:
    """What a compose service runs: its entrypoint (or the image's, for ours) plus its command."""
    default = list(entrypoint) if is_ours(service) else []
    return (as_argv(service.get("entrypoint")) or default) + as_argv(service.get("command"))


def compose_processes(compose: Mapping[str, Any], entrypoint: Sequence[str]) -> list[Process]:
    out = []
    for name, service in compose["services"].items():
        out += processes(f"compose service {name}", service_argv(service, entrypoint))
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            out += processes(f"compose service {name}: healthcheck", healthcheck_argv(test))
    return out


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# -- Kubernetes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name", ""))


def load_manifests() -> list[Manifest]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append(Manifest(path.name, doc))
    return out


def pod_spec(m: Manifest) -> dict[str, Any] | None:
    spec = m.doc.get("spec", {})
    if m.kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return spec["template"]["spec"]
    if m.kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(m: Manifest) -> list[dict[str, Any]]:
    spec = pod_spec(m)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


def k8s_is_ours(container: Mapping[str, Any]) -> bool:
    return str(container.get("image", "")).split(":")[0].rsplit("/", 1)[-1] == "couchfarm"


PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def k8s_processes(manifests: Sequence[Manifest], entrypoint: Sequence[str]) -> list[Process]:
    out = []
    for m in manifests:
        for c in containers(m):
            where = f"{m.file}: {m.kind} {m.name}, container {c['name']}"
            main = as_argv(c.get("command")) or (list(entrypoint) if k8s_is_ours(c) else [])
            out += processes(where, main + as_argv(c.get("args")))
            for probe in PROBES:
                command = (c.get(probe) or {}).get("exec", {}).get("command")
                if command:
                    out += processes(f"{where}: {probe}", command)
    return out


def k8s_env(container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """A container's environment, secret references resolved from ``secrets`` ($(VAR) expanded)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        env.update(secrets[ref["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), str(item["value"])
            )
            continue
        source = item.get("valueFrom", {})
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        if ref is None:
            env[item["name"]] = ""
            continue
        if ref["key"] not in secrets.get(ref["name"], {}):
            raise DeployError(f"container {container['name']}: {ref['name']} has no key {ref['key']}")
        env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


# -- Dockerfile --------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last:]
