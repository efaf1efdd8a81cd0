"""Config: TOML, environment and CLI layers; errors that name the field."""

from __future__ import annotations

import pytest

from edge_msa.cli import build_parser
from edge_msa.cli.common import overrides as cli_overrides
from edge_msa.config import ConfigError, load_config
from tests.conftest import cli


def write(tmp_path, text: str):
    path = tmp_path / "edge-msa.toml"
    path.write_text(text)
    return path


def test_layers_cli_over_env_over_file(tmp_path):
    path = write(tmp_path, 'device_id = "from-file"\n[mqtt]\nport = 1000\nhost = "file-host"\n')
    env = {"EDGE_MSA_MQTT__PORT": "2000", "EDGE_MSA_DEVICE_ID": "from-env", "EDGE_MSA_DATA": "x"}
    args = build_parser().parse_args(["run", "--demo", "--mqtt-port", "3000"])
    cfg = load_config(path, cli_overrides(args), environ=env)
    assert cfg.mqtt.port == 3000
    assert cfg.device_id == "from-env"
    assert cfg.mqtt.host == "file-host"
    assert cfg.source.demo is True


def test_env_list_and_bool(tmp_path):
    env = {"EDGE_MSA_OUTPUT__SINKS": '["mqtt", "jsonl"]', "EDGE_MSA_ASR__ENABLED": "false"}
    cfg = load_config(None, environ=env)
    assert cfg.output.sinks == ["mqtt", "jsonl"]
    assert cfg.asr.enabled is False


def test_env_values_keep_their_commas():
    env = {"EDGE_MSA_MQTT__PASSWORD": "pa,ss", "EDGE_MSA_SOURCE__MICROPHONE": "USB Audio, 2ch"}
    cfg = load_config(None, environ=env)
    assert cfg.mqtt.secret() == "pa,ss"
    assert cfg.source.microphone == "USB Audio, 2ch"


def test_env_list_not_json_is_one_line_naming_the_variable():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"EDGE_MSA_OUTPUT__SINKS": "mqtt,jsonl"})
    msg = str(err.value)
    assert "EDGE_MSA_OUTPUT__SINKS" in msg and "JSON" in msg and "\n" not in msg


def test_env_typo_names_the_variable():
    with pytest.raises(ConfigError, match="EDGE_MSA_MQTT_PORT.*unknown field"):
        load_config(None, environ={"EDGE_MSA_MQTT_PORT": "1884"})
    with pytest.raises(ConfigError, match=r"mqtt\.portt: unknown field"):
        load_config(None, environ={"EDGE_MSA_MQTT__PORTT": "1884"})


def test_secrets_dir_gives_the_password_and_env_wins(tmp_path):
    (tmp_path / "edge_msa_mqtt__password").write_text("from,file\n")
    (tmp_path / "other_app_token").write_text("not ours")
    cfg = load_config(None, environ={"EDGE_MSA_SECRETS_DIR": str(tmp_path)})
    assert cfg.mqtt.secret() == "from,file"
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "EDGE_MSA_MQTT__PASSWORD": "env"}
    assert load_config(None, environ=env).mqtt.secret() == "env"


def test_mqtt_enabled_is_gone():
    with pytest.raises(ConfigError, match=r"mqtt\.enabled: unknown field"):
        load_config(None, cli={"mqtt": {"enabled": False}}, environ={})


def test_unknown_field_names_it_and_the_allowed_ones(tmp_path):
    path = write(tmp_path, "[mqtt]\nhots = 'x'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    msg = str(err.value)
    assert "mqtt.hots" in msg and "unknown field" in msg and "host" in msg and "port" in msg


def test_bad_value_names_field_and_allowed_values(tmp_path):
    path = write(tmp_path, "[runtime]\nbackend = 'gpu'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    msg = str(err.value)
    assert "runtime.backend" in msg and "'cpu'" in msg and "'tensorrt'" in msg and "'gpu'" in msg


def test_bad_env_value_names_field():
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        load_config(None, environ={"EDGE_MSA_MQTT__PORT": "not-a-port"})


@pytest.mark.parametrize("bad", ["a/b", "a+b", "#", ""])
def test_device_id_must_be_one_topic_level(bad):
    with pytest.raises(ConfigError, match="device_id"):
        load_config(None, cli={"device_id": bad}, environ={})


@pytest.mark.parametrize("bad", ["edge//msa", "edge/+", "x/#", ""])
def test_prefix_levels_validated(bad):
    with pytest.raises(ConfigError, match=r"mqtt\.prefix"):
        load_config(None, cli={"mqtt": {"prefix": bad}}, environ={})


def test_validate_config_command(tmp_path):
    good = write(tmp_path, "[vad]\nthreshold = 0.6\n")
    ok = cli("validate-config", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 70000\n")
    res = cli("validate-config", str(bad))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "mqtt.port" in lines[0] and "65535" in lines[0]
    assert "Traceback" not in res.stderr


def test_malformed_toml_is_one_line(tmp_path):
    bad = write(tmp_path, "[mqtt\nport = \n")
    res = cli("validate-config", str(bad))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "not valid TOML" in res.stderr


def test_shipped_example_config_is_valid():
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "edge-msa.toml", environ={})
    assert cfg.device_id == "kiosk-lobby" and cfg.source.camera == 0


def test_mqtt_flags_without_mqtt_output_warn_once(caplog):
    from edge_msa.cli.run import warn_unused_mqtt

    args = build_parser().parse_args(["run", "--demo", "--output", "jsonl", "--mqtt-host", "h"])
    cfg = load_config(None, cli_overrides(args), environ={})
    with caplog.at_level("WARNING", logger="edge_msa"):
        warn_unused_mqtt(vars(args), cfg)
    assert len(caplog.records) == 1
    assert "--mqtt-host" in caplog.text and "--output mqtt" in caplog.text

    caplog.clear()
    args = build_parser().parse_args(["run", "--demo", "--mqtt-host", "h"])
    warn_unused_mqtt(vars(args), load_config(None, cli_overrides(args), environ={}))
    assert not caplog.records


def test_optional_library_missing_names_the_extra():
    from edge_msa.cli.common import missing_extra

    err = ModuleNotFoundError("No module named 'torch'", name="torch")
    line = missing_extra(err, "train")
    assert line == "`edge-msa train` needs torch: pip install 'edge-msa[train]'"
    assert missing_extra(ModuleNotFoundError("x", name="numpy"), "run") is None
