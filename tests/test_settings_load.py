"""``Settings.load`` reads the variables it is given and never changes ``os.environ``, so loads in
several threads do not see each other's; built directly, settings take no variables at all. Commands
get them ready-made from ``--config``/``--url`` (``workers/cli_common.py::pass_settings``)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from couchfarm.errors import ConfigError
from couchfarm.settings import Settings
from workers import cli_common


def test_load_reads_the_given_variables_and_leaves_os_environ_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUCHFARM_BATCH_SIZE", "7")
    before = dict(os.environ)
    assert Settings.load(env={"COUCHFARM_FARM": "given"}).batch_size == 50  # not the process's 7
    assert Settings.load(env={"COUCHFARM_BATCH_SIZE": "9"}).batch_size == 9
    assert Settings.load().batch_size == 7  # no mapping: the process environment
    with pytest.raises(ConfigError, match="batch_size"):
        Settings.load(env={"COUCHFARM_BATCH_SIZE": "0"})
    assert dict(os.environ) == before


def test_settings_built_directly_take_no_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUCHFARM_BATCH_SIZE", "7")
    assert Settings().batch_size == 50 and Settings(batch_size=8).batch_size == 8


def test_loads_in_threads_each_see_their_own_variables() -> None:
    names = [f"farm{i}" for i in range(8)]
    start = threading.Barrier(len(names))
    seen: dict[str, list[str | None]] = {name: [] for name in names}

    def load(name: str) -> None:
        start.wait()
        for _ in range(40):
            seen[name].append(Settings.load(env={"COUCHFARM_FARM": name}).farm)

    threads = [threading.Thread(target=load, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == {name: [name] * 40 for name in names}


@click.command()
@cli_common.pass_settings
@click.option("--strategy", default=None)
def probe(settings: Settings, strategy: str | None) -> None:
    click.echo(json.dumps([settings.couch_url, settings.batch_size, settings.config_file, strategy]))


def test_a_command_gets_the_settings_its_options_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "setup_logging", lambda *a: None)  # the root logger stays pytest's
    path = tmp_path / "farm.yaml"
    path.write_text("batch_size: 7\n")
    done = CliRunner().invoke(probe, ["--config", str(path), "--url", "http://h:1", "--strategy", "winner"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == ["http://h:1", 7, str(path), "winner"]
    monkeypatch.setenv("COUCHFARM_CONFIG", str(path))
    assert json.loads(CliRunner().invoke(probe, []).output)[1:3] == [7, str(path)]
    bad = CliRunner().invoke(probe, ["--strategy", "nonsense"])  # built at load: fails before the body
    assert isinstance(bad.exception, ConfigError) and "nonsense" in str(bad.exception)


def test_settings_loaded_again_with_a_value_found_at_run_time(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("batch_size: 7\n")
    first = Settings.load(path, env={"COUCHFARM_LEASE_TTL": "40"}, couch_url="http://h:1")
    again = first.with_overrides(redis_url="redis://127.0.0.1:1/0")
    assert (again.batch_size, again.lease_ttl, again.couch_url) == (7, 40, "http://h:1")
    assert again.redis_url == "redis://127.0.0.1:1/0" and again.source_of("redis_url") == "command line"
    with pytest.raises(ConfigError, match="redis_url"):
        first.with_overrides(redis_url="ftp://nope")
