"""Configuration: pydantic models, loaded from TOML, then secret files, then
``EDGE_MSA_*`` environment variables, then CLI flags (each layer overrides the
one before).

Environment variables and secret files are read by pydantic-settings: a field
is named by its path with ``__`` between levels (``EDGE_MSA_MQTT__PORT=1884``,
``EDGE_MSA_DEVICE_ID=kiosk-1``), and lists are JSON
(``EDGE_MSA_OUTPUT__SINKS='["mqtt","jsonl"]'``), so a value may hold commas.
Secret files carry the same names in a secrets folder
(``$EDGE_MSA_SECRETS_DIR``, else systemd's ``$CREDENTIALS_DIRECTORY``, else
``/run/secrets``): a file ``edge_msa_mqtt__password`` holds the MQTT password.
``EDGE_MSA_DATA``, ``EDGE_MSA_MODELS``, ``EDGE_MSA_TRT_CACHE`` and
``EDGE_MSA_SECRETS_DIR`` are not config fields: they locate data sets, model
folders, the TensorRT engine cache and the secrets folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import EnvSettingsSource
from pydantic_settings.exceptions import SettingsError

from edge_msa.encoders.asr_window import SHIPPED_WINDOW

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ENV_PREFIX = "EDGE_MSA_"
NOT_CONFIG_ENV = {"EDGE_MSA_DATA", "EDGE_MSA_MODELS", "EDGE_MSA_TRT_CACHE", "EDGE_MSA_SECRETS_DIR"}
SECRETS_DIRS = ("EDGE_MSA_SECRETS_DIR", "CREDENTIALS_DIRECTORY")  # then /run/secrets
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    """A config problem, already phrased for the user in one line."""


class _Model(BaseModel):
    # No inf or nan: a rate or length of inf passes gt=0 and breaks the runtime later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SourceConfig(_Model):
    camera: int | str | None = Field(None, description="camera index or device path")
    microphone: int | str | None = Field(None, description="input device index or name")
    media: str | None = Field(None, description="media file path or rtsp:// URL")
    demo: bool = False
    realtime: bool = False
    width: int = Field(640, gt=0)
    height: int = Field(480, gt=0)
    fps: float = Field(15.0, gt=0)
    use_microphone: bool = Field(True, description="with --camera, also open the microphone")
    reconnect_max_s: float = Field(30.0, gt=0)


class VadConfig(_Model):
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = Field(250, ge=0)
    hangover_ms: int = Field(500, ge=0)
    max_utterance_s: float = Field(15.0, gt=1)
    pad_ms: int = Field(150, ge=0)


class AsrConfig(_Model):
    enabled: bool = Field(True, description="false: no speech recognition (privacy)")
    early_start: bool = Field(
        True,
        description="live and --realtime runs: recognise during the VAD hangover, so little "
        "is left when the utterance closes",
    )
    draft_pause_ms: int = Field(
        240,
        ge=0,
        description="with early_start: begin recognising only after this long a pause (a "
        "shorter one is often a breath, and speech going on wastes the pass); at or above "
        "vad.hangover_ms there is no early start",
    )
    beam_size: int = Field(1, ge=1, le=10)
    threads: int = Field(2, ge=1)
    present_min_logprob: float = -0.8
    absent_min_no_speech: float = Field(0.6, ge=0, le=1)
    # The voice head and the fusion model were trained on the frames of
    # [5, 10, 15, 30] with a 1 s margin: another window changes their inputs
    # (docs/asr.md).
    window: Literal["full", "fit"] | list[float] = Field(
        default_factory=lambda: list(SHIPPED_WINDOW.sizes_s),
        description='Whisper encoder window: sizes in seconds such as [5, 10, 15, 30] (the '
        'smallest holding the audio plus the margin; what the models were trained on), '
        '"full" (Whisper\'s fixed 30 s) or "fit" (the audio plus window_margin_s, in whole '
        "seconds)",
    )
    window_margin_s: float = Field(
        1.0, ge=0, le=10, description="padding after the audio in a window under 30 s"
    )
    window_fallback: bool = Field(
        True, description="a short window's transcript that fails Whisper's checks is decoded "
        "again from the full window",
    )

    @field_validator("window")
    @classmethod
    def _window_sizes(cls, v: str | list[float]) -> str | list[float]:
        if isinstance(v, list) and (not v or min(v) <= 0 or max(v) > 30):
            raise ValueError("window sizes must be seconds in (0, 30]")
        return v


class VisionConfig(_Model):
    enabled: bool = Field(True, description="false: frames are not analysed, vision is absent")
    max_fps: float = Field(10.0, gt=0, description="analyse at most this many frames a second")
    threads: int = Field(1, ge=1)
    visual_interval_s: float = Field(
        5.0, ge=0, description="face-only result this often when nobody speaks; 0: never"
    )
    min_face_ratio: float = Field(
        0.2, ge=0, le=1, description="share of analysed frames with a face for vision present"
    )
    align: bool = Field(
        True,
        description="turn each face's square crop so its eyes lean at most 5 degrees "
        "(the detector's eye landmarks; docs/models.md); false: the square crop as it is",
    )


class VoiceConfig(_Model):
    enabled: bool = Field(True, description="false: no acoustic encoder, audio is absent")
    threads: int = Field(1, ge=1)


class TextConfig(_Model):
    model_dir: Path | None = None
    threads: int = Field(1, ge=1)


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = "edge-msa"
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA certificate(s) (PEM) for TLS")
    username: str | None = None
    # Never logged or printed (SecretStr): give it as EDGE_MSA_MQTT__PASSWORD or
    # in password_file (e.g. a systemd credential), not in a shared TOML file.
    password: SecretStr | None = None
    password_file: Path | None = Field(
        None, description="a file whose first line is the password"
    )
    keepalive: int = Field(30, ge=5)
    backoff_max_s: float = Field(30.0, gt=0)
    ha_discovery: bool = Field(
        False, description="publish Home Assistant MQTT discovery configs (retained)"
    )
    ha_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")

    @field_validator("ca_file", "password_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not os.access(value.expanduser(), os.R_OK):
            raise ValueError(f"{str(value)!r} does not exist or cannot be read")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set mqtt.password or mqtt.password_file, not both")
        return self

    def secret(self) -> str | None:
        """The password, read from password_file at each connect (it may be rotated)."""
        if self.password_file is not None:
            text = self.password_file.expanduser().read_text(encoding="utf-8")
            return text.splitlines()[0] if text else ""
        return self.password.get_secret_value() if self.password is not None else None

    @field_validator("prefix", "ha_prefix")
    @classmethod
    def _prefix_levels(cls, value: str) -> str:
        for level in value.split("/"):
            if not _TOPIC_LEVEL.match(level):
                raise ValueError(
                    f"topic levels may use letters, digits, '_', '.', '-' and may not be empty "
                    f"(got {value!r})"
                )
        return value


class OutputConfig(_Model):
    sinks: list[Literal["mqtt", "jsonl"]] = Field(default_factory=lambda: ["mqtt"])
    jsonl_file: Path | None = Field(None, description="also append each result to this file")
    include_transcript: bool = False
    preview_file: Path | None = Field(
        None, description="write an mp4 of the analysed frames with face box and sentiment"
    )
    preview_window: bool = Field(False, description="show the preview in a window (needs a GUI)")


class RuntimeConfig(_Model):
    backend: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    state_dir: Path = Path("~/.local/state/edge-msa")
    flush_timeout_s: float = Field(10.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(
        0, ge=0, le=65535, description="serve /metrics and /healthz on this port; 0: off"
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds")
    max_consecutive_failures: int = Field(
        3,
        ge=1,
        description="a stage (recogniser, voice, text, face, fusion) failing on this many "
        "utterances in a row ends the run with exit 1; a single failure costs only that "
        "utterance's modality",
    )
    stall_limit_s: float = Field(
        60.0,
        gt=0,
        description="a stage (VAD, recogniser, publisher) with work waiting and no progress "
        "for this long is stalled: /healthz answers 503 and systemd's watchdog gets no ping",
    )
    listen: bool = Field(
        True,
        description="false: start muted (audio and frames dropped until <prefix>/<device_id>"
        "/listen/set gets ON)",
    )


class Config(_Model):
    device_id: str = "edge-msa-1"
    source: SourceConfig = SourceConfig()
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    text: TextConfig = TextConfig()
    vision: VisionConfig = VisionConfig()
    voice: VoiceConfig = VoiceConfig()
    mqtt: MqttConfig = MqttConfig()
    output: OutputConfig = OutputConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if not _TOPIC_LEVEL.match(value):
            raise ValueError(
                f"use letters, digits, '_', '.', '-' only (it is a topic level; got {value!r})"
            )
        return value


def describe_error(err: ValidationError, model: type[BaseModel] = Config) -> str:
    """One line per problem: the field path, what is wrong, what is allowed."""
    lines = []
    for e in err.errors():
        path = ".".join(_printable(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(_fields_at(model, e["loc"][:-1]))
            lines.append(f"{path}: unknown field; allowed here: {allowed}")
        elif "password" in path:  # say what is wrong, never the secret
            lines.append(f"{path}: {e['msg']}")
        else:
            lines.append(f"{path}: {e['msg']} (got {_redacted(e.get('input'))!r})")
    return "; ".join(lines)


def _printable(part: object) -> str:
    """A key as written, or quoted with escapes when it holds a newline or
    another control character (the message must stay one line)."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if k == "password" else _redacted(v) for k, v in value.items()}
    return value


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment parsing over a given mapping (tests pass their own)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            Config,
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            env_parse_none_str=None,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``EDGE_MSA_A__B=value`` variables; raises ConfigError."""
    ours = {
        k: v
        for k, v in environ.items()
        if k.upper().startswith(ENV_PREFIX) and k.upper() not in NOT_CONFIG_ENV
    }
    for key in ours:  # pydantic-settings ignores names that match no field: a typo must not
        top = key[len(ENV_PREFIX) :].lower().split("__")[0]
        if top not in Config.model_fields:
            raise ConfigError(
                f"config error: environment variable {_printable(key)}: unknown field {top!r}; "
                f"allowed: {', '.join(Config.model_fields)} (levels are joined by '__')"
            )
    try:
        return _EnvSource(ours)()
    except SettingsError as e:
        raise ConfigError(_env_error(e, ours)) from None


def _env_error(err: SettingsError, environ: Mapping[str, str]) -> str:
    match = re.search(r'field "([^"]+)"', str(err))
    field = match.group(1) if match else ""
    names = sorted(k for k in environ if k.upper().startswith(f"{ENV_PREFIX}{field.upper()}"))
    where = ", ".join(_printable(k) for k in names) or "EDGE_MSA_*"
    return (
        f"config error: environment variable {where} cannot be read as {field or 'a field'}: "
        f"lists are JSON (EDGE_MSA_OUTPUT__SINKS='[\"mqtt\",\"jsonl\"]') and a section "
        "cannot be both a value and a table"
    )


def secret_files(folder: Path) -> dict[str, str]:
    """``EDGE_MSA_*`` files in a secrets folder as variables (first line of each)."""
    out: dict[str, str] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for path in entries:
        if path.is_file() and path.name.upper().startswith(ENV_PREFIX):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"config error: secret file {path} cannot be read: {e}") from None
            out[path.name] = text.splitlines()[0] if text else ""
    return out


def secrets_dir(environ: Mapping[str, str], default: bool) -> Path | None:
    for name in SECRETS_DIRS:
        if environ.get(name):
            return Path(environ[name])
    return Path("/run/secrets") if default else None


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as e:  # a folder, no permission, an I/O error
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path} is not valid TOML: not UTF-8 text (byte {e.start}); "
            "save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_config(
    path: str | Path | None = None,
    cli: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """TOML file, then secret files, then environment, then CLI flags; raises ConfigError.

    ``environ`` defaults to the process's environment (and ``/run/secrets``).
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = read_toml(path) if path else {}
    folder = secrets_dir(env, default=environ is None)
    if folder is not None:
        data = merge(data, env_overrides(secret_files(folder)))
    data = merge(data, env_overrides(env))
    data = merge(data, cli or {})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config error{where}: {describe_error(e)}") from None
