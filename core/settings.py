"""Configuration: built-in defaults, an optional ``tfrelease.toml``, then ``TFRELEASE_*``.

Precedence (highest first): environment variables (``TFRELEASE_HOME``,
``TFRELEASE_DATABASE_URL``, nested keys with ``__`` such as
``TFRELEASE_MODELS__DIGITS__TRAINING__EPOCHS=5``), the TOML file named by
``TFRELEASE_CONFIG`` (default ``./tfrelease.toml``, skipped when absent), built-in defaults.

Settings are built on first use by :func:`get_settings`, never at import.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "tfrelease.toml"


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key and why."""

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> ConfigError:
        """One line per bad key: ``  <key>: <why> (got <value>)``. The value is shown only when
        it is a plain value of a key that holds no secret: a whole section (as a model-level check
        reports it) could carry a token, and a secret is never printed."""
        lines = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(root)"
            lines.append(f"  {key}: {item['msg']}{_shown_input(item['loc'], item.get('input'))}")
        return cls("invalid tfrelease configuration:\n" + "\n".join(lines))


# Keys whose values are secrets, or URLs that may carry a password: never echoed in an error.
_SECRET_KEY_PARTS = ("token", "secret", "password", "url")


def _shown_input(loc: tuple[Any, ...], value: Any) -> str:
    if isinstance(value, (dict, list, tuple, set)):
        return ""
    if any(part in str(name).lower() for name in loc for part in _SECRET_KEY_PARTS):
        return " (value hidden)"
    return f" (got {value!r})"


class _Strict(BaseModel):
    # A misspelt key in tfrelease.toml must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class TrainingParams(_Strict):
    """Hyperparameters of the Keras classifier (a dense network)."""

    hidden_units: list[PositiveInt] = Field(
        default=[64], min_length=1, description="Sizes of the hidden Dense layers, input side first."
    )
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    learning_rate: PositiveFloat = 0.003
    seed: int = Field(default=42, description="Seeds Python, NumPy and TensorFlow; same seed + data = same model.")


class ReleasePolicy(_Strict):
    """The release gates applied by ``tasks.decide.decide``.

    Accuracy figures are fractions in [0, 1] on the held-out set.
    """

    min_accuracy: float = Field(default=0.9, ge=0, le=1, description="Absolute gate: below it a candidate is rejected.")
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Accuracy gain over production needed to promote without a human; a tie never promotes.",
    )
    max_recall_drop: float = Field(
        default=0.05, ge=0, le=1, description="Largest allowed drop of any class's recall against production."
    )
    approval: Literal["auto", "always"] = Field(
        default="auto", description="auto: promote clear improvements, ask a human otherwise; always: always ask."
    )
    promote_first: bool = Field(
        default=True, description="With no production version, promote a candidate that passes the absolute gates."
    )


class ModelSettings(_Strict):
    """One model: where its data comes from, its data contract, training and release policy."""

    source: Literal["digits", "folder"] = Field(
        default="digits",
        description=(
            "digits: scikit-learn's bundled UCI digits, delivered as daily batches into incoming/; "
            "folder: the user's own Parquet or CSV batches in incoming_dir, with holdout_path."
        ),
    )
    incoming_dir: Path | None = Field(default=None, description="Default <home>/data/<model>/incoming.")
    holdout_path: Path | None = Field(default=None, description="Fixed evaluation set (Parquet or CSV); folder source only.")
    suite: str = Field(default="digits", description="Expectation suite: expectations/<suite>.json or a path to a JSON file.")
    label_column: str = "label"
    num_classes: PositiveInt = 10
    input_name: str = Field(default="pixels", description="Name of the SavedModel's input tensor.")
    keep_versions: PositiveInt = Field(default=5, description="Versions with files kept by `tfrelease gc`, besides protected ones.")
    training: TrainingParams = TrainingParams()
    policy: ReleasePolicy = ReleasePolicy()

    @model_validator(mode="after")
    def _folder_needs_paths(self) -> ModelSettings:
        if self.source == "folder" and (self.incoming_dir is None or self.holdout_path is None):
            raise ValueError("source 'folder' needs both incoming_dir and holdout_path")
        return self


class SlackSettings(_Strict):
    """Slack Web API access; Slack is off unless both bot_token and channel are set.

    The receiver (``tfrelease slack-app``) also needs ``signing_secret`` (HTTP mode) or
    ``app_token`` (Socket Mode), and at least one approver: a click by anyone else changes
    nothing. Approvers are Slack user ids (``U012AB3CD``), not names.
    """

    bot_token: SecretStr | None = None
    channel: str | None = None
    api_base_url: str = Field(default="https://slack.com/api/", description="Changed only to reach a stand-in in tests.")
    timeout_seconds: PositiveFloat = 10.0
    signing_secret: SecretStr | None = Field(default=None, description="Verifies that HTTP requests come from Slack.")
    app_token: SecretStr | None = Field(
        default=None, description="App-level token (xapp-...); when set the receiver uses Socket Mode instead of HTTP."
    )
    host: str = Field(
        default="127.0.0.1",
        description="HTTP mode: address to listen on; Slack needs HTTPS, so a TLS proxy usually sits in front (0.0.0.0 in a container).",
    )
    port: int = Field(default=3000, ge=1, le=65535, description="HTTP mode: port; requests arrive at /slack/events.")
    approvers: list[str] = Field(default_factory=list, description="Slack user ids allowed to act on every model.")
    model_approvers: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra Slack user ids allowed to act on one model, by model name."
    )
    approver_group: str | None = Field(
        default=None,
        description="Id of a Slack user group (S...) whose members may act on every model; read with usergroups.users.list.",
    )

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None and bool(self.channel)


class ScheduleSettings(_Strict):
    """When ``tfrelease serve`` runs the nightly retrain of every configured model."""

    cron: str = Field(
        default="0 2 * * *", description="Five-field cron expression (minute hour day month weekday), read in ``timezone``."
    )
    timezone: str = Field(
        default="UTC",
        description=(
            "IANA time zone of ``cron`` (e.g. Europe/Berlin). In a zone with daylight saving time, "
            "a time inside the skipped hour runs one hour early on that night."
        ),
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("cron needs five fields: minute hour day-of-month month day-of-week")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin") from None
        return value


class ServingSettings(_Strict):
    """How a release or rollback reaches TF Serving beyond ``models.config``."""

    grpc_address: str | None = Field(
        default=None,
        description="host:port of TF Serving's gRPC API; when set, configs are pushed and verified, not only written.",
    )
    reload_timeout_seconds: PositiveFloat = Field(
        default=120.0,
        le=240.0,
        # A switch takes at most a push and a restore (2 x this); the model lock's lease is 600 s.
        description="How long a push may wait for the new versions to become AVAILABLE (at most 240 s).",
    )


class Settings(BaseSettings):
    """Everything tfrelease reads from its configuration."""

    model_config = SettingsConfigDict(
        env_prefix="TFRELEASE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = Field(default=Path(".tfrelease"), description="Holds the registry, models/ and data/.")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; default sqlite:///<home>/registry.db."
    )
    models: dict[str, ModelSettings] = Field(default_factory=lambda: {"digits": ModelSettings()})
    default_model: str = "digits"
    slack: SlackSettings = SlackSettings()
    serving: ServingSettings = ServingSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    prefect_ui_url: str | None = Field(default=None, description="Base URL of the Prefect UI, for links in messages.")

    @model_validator(mode="after")
    def _default_model_exists(self) -> Settings:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not one of the configured models {sorted(self.models)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("TFRELEASE_CONFIG", DEFAULT_CONFIG_FILE))
        if "TFRELEASE_CONFIG" in os.environ and not toml_file.is_file():
            raise ConfigError(f"TFRELEASE_CONFIG names {toml_file}, which is not a file")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @property
    def registry_url(self) -> str:
        """The registry's SQLAlchemy URL."""
        return self.database_url or f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def model_store(self) -> Path:
        """Root of the SavedModels: ``<model_store>/<model>/<version>/``, TF Serving's base paths."""
        return (self.home / "models").resolve()

    @property
    def serving_config_path(self) -> Path:
        """The TF Serving ``--model_config_file`` written on every promotion."""
        return self.model_store / "models.config"

    def model(self, name: str) -> ModelSettings:
        """The named model's settings.

        Raises:
            ConfigError: no model of that name is configured.
        """
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r}; configured models: {sorted(self.models)}") from None

    def data_dir(self, model: str) -> Path:
        """``<home>/data/<model>``: holds incoming/, accepted/, quarantine/ and the held-out set."""
        return (self.home / "data" / model).resolve()

    def incoming_dir(self, model: str) -> Path:
        """Where new batches for ``model`` arrive."""
        return self.model(model).incoming_dir or self.data_dir(model) / "incoming"


def load_settings(**overrides: object) -> Settings:
    """Build settings from defaults, the TOML file and the environment, plus ``overrides``.

    Raises:
        ConfigError: a value is invalid (the message names each key and why), or the TOML file
            does not parse (the message names the file, line and column).
    """
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError.from_validation_error(error) from None
    except tomllib.TOMLDecodeError as error:  # its message names the line and column
        config = Path(os.environ.get("TFRELEASE_CONFIG", DEFAULT_CONFIG_FILE))
        raise ConfigError(f"{config} is not valid TOML: {error}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
