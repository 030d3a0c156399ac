"""Configuration: built-in defaults, an optional ``tfrelease.toml``, then ``TFRELEASE_*``.

Precedence (highest first): environment variables (``TFRELEASE_HOME``,
``TFRELEASE_DATABASE_URL``, nested keys with ``__`` such as
``TFRELEASE_MODELS__DIGITS__TRAINING__EPOCHS=5``), the TOML file named by
``TFRELEASE_CONFIG`` (default ``./tfrelease.toml``, skipped when absent), built-in defaults.

Settings are built on first use by :func:`get_settings`, never at import.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any, Literal
from urllib.parse import quote, urlsplit

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
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.store_location import store_path

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


class TrainingWindow(_Strict):
    """Which accepted batches a model trains on: all of them (neither limit set), or exactly one
    of ``batches`` (the newest N accepted batches) and ``days`` (those accepted in the N days
    before the run).

    In ``tfrelease.toml``: ``window = { batches = 30 }`` or ``window = { days = 90 }`` under
    ``[models.<name>.training]``; ``window = "all"`` (the default) trains on every batch.
    """

    batches: PositiveInt | None = Field(default=None, description="Train on the newest N accepted batches (by acceptance time).")
    days: PositiveInt | None = Field(
        default=None, description="Train on the batches accepted in the last N days (24-hour days before the run's start, UTC)."
    )

    @model_validator(mode="before")
    @classmethod
    def _all_or_one_limit(cls, value: Any) -> Any:
        if value == "all":
            return {}
        if isinstance(value, dict) and len(value) <= 1 or isinstance(value, TrainingWindow):
            return value  # {} is "all" (the default's own form)
        raise PydanticCustomError("training_window", 'must be "all", { batches = N } or { days = N } (exactly one of the two)')


class TrainingParams(_Strict):
    """Hyperparameters of the Keras classifier (a dense network) and what it is trained on."""

    hidden_units: list[PositiveInt] = Field(
        default=[64], min_length=1, description="Sizes of the hidden Dense layers, input side first."
    )
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    learning_rate: PositiveFloat = 0.003
    seed: int = Field(default=42, description="Seeds Python, NumPy and TensorFlow; same seed + data = same model.")
    shuffle_buffer_rows: PositiveInt = Field(
        default=50_000,
        description="Rows held in the shuffle buffer while training streams the batches from disk: training memory "
        "stays bounded by it (about 260 bytes a row at 64 features); rows mix only within it, and across batches "
        "through the order of the files, shuffled each epoch.",
    )
    window: TrainingWindow = Field(
        default_factory=TrainingWindow,
        description='Which accepted batches to train on: "all" (default), { batches = N } (the newest N) or '
        "{ days = N } (accepted in the last N days), for data that grows without end.",
    )


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
    confidence_level: float = Field(
        default=0.95,
        ge=0.5,
        lt=1,
        description=(
            "A change against production counts only when significant at this level (McNemar's exact test on the "
            "same held-out examples, p < 1 - level); otherwise a human decides. Also the level of the intervals shown."
        ),
    )
    max_recall_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Largest allowed drop of any class's recall against production; a larger one is rejected when "
        "significant (per class, at confidence_level shared among the classes), else a human decides.",
    )
    approval: Literal["auto", "always"] = Field(
        default="auto", description="auto: promote clear improvements, ask a human otherwise; always: always ask."
    )
    promote_first: bool = Field(
        default=True, description="With no production version, promote a candidate that passes the absolute gates."
    )


# Prometheus's duration syntax (model.ParseDuration): units from the largest down, each at most
# once, integers only: "30s", "5m", "1h30m", "2d", "500ms".
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as ``30s``, ``5m``, ``1h30m`` or ``500ms``
    (units y, w, d, h, m, s, ms, largest first, each at most once; a year is 365 days).

    Raises:
        ValueError: ``text`` is not such a duration, or it is zero.
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration; use e.g. 30s, 5m, 1h30m")
    seconds = sum(int(count) * unit for count, unit in zip(match.groups(), _DURATION_UNITS) if count)
    if seconds <= 0:
        raise ValueError(f"{text!r} is zero; a duration must be longer than 0s")
    return seconds


QUERY_PLACEHOLDERS = ("model", "window", "label", "version")
"""What a monitoring query template may use: ``$model`` (the model's name), ``$window`` (the
``window`` setting, a Prometheus duration), ``$label`` (TF Serving's version label of what is
measured: ``stable`` or ``canary``) and ``$version`` (its version number)."""

_VERSION_PLACEHOLDERS = ("label", "version")
_NO_VERSION_NOTE = (
    " TF Serving's own metrics carry no version label, so this default measures every version of"
    " the model together: a canary needs a template that uses $label or $version (e.g. figures"
    " from a proxy in front of TF Serving that labels requests by version)."
)


class MonitoringQueries(_Strict):
    """PromQL templates of the figures the watch judges, with ``string.Template`` placeholders
    (see :data:`QUERY_PLACEHOLDERS`; PromQL uses braces, so ``$name``, not ``{name}``; a literal
    ``$`` is written ``$$``). Each query must return one series or a scalar: aggregate it, e.g.
    with ``sum(...)``.

    Defaults use TF Serving's own metrics (tensorflow_serving/servables/tensorflow/util.cc):
    the counter ``:tensorflow:serving:request_count{model_name, status}`` (status ``OK`` or an
    error code name) and the histogram ``:tensorflow:serving:runtime_latency`` (microseconds,
    labels model_name, API, runtime).
    """

    requests: str = Field(
        default='sum(increase(:tensorflow:serving:request_count{model_name="$model"}[$window]))',
        description="Requests over the window (a count); no result means no data." + _NO_VERSION_NOTE,
    )
    errors: str = Field(
        default='sum(increase(:tensorflow:serving:request_count{model_name="$model",status!="OK"}[$window])) or vector(0)',
        description=(
            "Failed requests over the window (a count). Must give 0, not an empty result, when there "
            "were none (hence `or vector(0)`): a missing error count is no data." + _NO_VERSION_NOTE
        ),
    )
    latency_p99_ms: str = Field(
        default=(
            "histogram_quantile(0.99, sum by (le) "
            '(rate(:tensorflow:serving:runtime_latency_bucket{model_name="$model"}[$window]))) / 1000'
        ),
        description=(
            "99th percentile latency over the window, in milliseconds (TF Serving records "
            "microseconds, hence / 1000); NaN or no result means unknown." + _NO_VERSION_NOTE
        ),
    )

    @field_validator("requests", "errors", "latency_p99_ms")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        template = Template(value)
        use = ", ".join(f"${name}" for name in QUERY_PLACEHOLDERS)
        if not template.is_valid():
            raise PydanticCustomError(
                "query_template", f"not a valid template: every $ must start a placeholder ({use}); write $$ for a literal $"
            )
        unknown = [name for name in template.get_identifiers() if name not in QUERY_PLACEHOLDERS]
        if unknown:
            raise PydanticCustomError("query_template", f"unknown placeholder ${unknown[0]}; use {use}")
        return value

    def templates(self) -> dict[str, str]:
        """Figure name (``requests``, ``errors``, ``latency_p99_ms``) -> its template."""
        return {"requests": self.requests, "errors": self.errors, "latency_p99_ms": self.latency_p99_ms}

    def distinguishes_versions(self) -> bool:
        """Whether every template uses ``$label`` or ``$version``, i.e. can measure a canary apart
        from production. False for the defaults: TF Serving's counters have no version label."""
        return all(
            any(name in _VERSION_PLACEHOLDERS for name in Template(text).get_identifiers())
            for text in self.templates().values()
        )


def _http_base_url(value: str | None, example: str) -> str | None:
    """``value`` stripped of spaces and a trailing slash, once it is an http(s) base URL.

    Raises:
        PydanticCustomError: it is not; the message never repeats the value (a URL may carry a
            password) and shows ``example`` instead.
    """
    if value is None:
        return None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("http_url", f"must be an http(s) URL such as {example}")
    if parts.query or parts.fragment:
        raise PydanticCustomError("http_url", "must be a base URL, without ?query or #fragment")
    return value.strip().rstrip("/")


class MonitoringSettings(_Strict):
    """Watching production in Prometheus, and the rule that rolls it back.

    The default rule is "more than 5 % of requests failing over 5 minutes", judged only with at
    least ``min_requests`` requests in the window: with fewer, or no data, there is no verdict and
    never a rollback. Rates are fractions in [0, 1]; latencies milliseconds; durations Prometheus
    durations (``30s``, ``5m``, ``1h30m``), also readable in seconds via the ``*_seconds``
    properties.
    """

    prometheus_url: str | None = Field(
        default=None,
        description="Base URL of the Prometheus HTTP API as tfrelease reaches it (http or https); unset: the model is not watched.",
    )
    window: str = Field(default="5m", description="Window of every figure, a Prometheus duration ($window in the queries).")
    max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="Breach above this fraction of failed requests over the window (not at it)."
    )
    min_requests: PositiveInt = Field(
        default=100, description="Requests over the window below which there is no verdict (blind), never a rollback."
    )
    max_latency_p99_ms: PositiveFloat | None = Field(
        default=None, description="Breach when the p99 latency (milliseconds) is above this; unset: latency is not judged."
    )
    watch_for: str = Field(
        default="24h", description="How long after a release its production version is watched, a Prometheus duration."
    )
    canary_soak: str = Field(default="30m", description="Default soak of a canary before it is promoted, a Prometheus duration.")
    canary_max_error_rate_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="A canary also breaches when its error rate exceeds production's by more than this (a fraction: 0.01 = 1 point).",
    )
    canary_max_latency_ratio: float = Field(
        default=1.5, ge=1, description="A canary also breaches when its p99 is above production's p99 times this (both known)..."
    )
    canary_min_latency_increase_ms: float = Field(
        default=25.0,
        ge=0,
        description=(
            "...and at least this many milliseconds above it: at a few milliseconds a ratio measures histogram "
            "buckets and scheduling noise, not the model."
        ),
    )
    timeout_seconds: PositiveFloat = Field(
        default=5.0,
        le=15.0,
        description="Per Prometheus query, in seconds (at most 15: a verdict runs a few queries and the watch runs every minute).",
    )
    graph_url: str | None = Field(
        default=None, description="Prometheus base URL for graph links in messages, when people reach it elsewhere than prometheus_url."
    )
    queries: MonitoringQueries = MonitoringQueries()

    @field_validator("prometheus_url", "graph_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _http_base_url(value, "http://prometheus:9090")

    @field_validator("window", "watch_for", "canary_soak")
    @classmethod
    def _prometheus_duration(cls, value: str) -> str:
        try:
            duration_seconds(value)
        except ValueError:
            raise PydanticCustomError(
                "duration", "not a Prometheus duration longer than 0s; use e.g. 30s, 5m, 1h30m"
            ) from None
        return value.strip()

    @property
    def enabled(self) -> bool:
        """Whether the model is watched (``prometheus_url`` is set)."""
        return self.prometheus_url is not None

    @property
    def window_seconds(self) -> float:
        return duration_seconds(self.window)

    @property
    def watch_for_seconds(self) -> float:
        return duration_seconds(self.watch_for)

    @property
    def canary_soak_seconds(self) -> float:
        return duration_seconds(self.canary_soak)


class ModelSettings(_Strict):
    """One model: where its data comes from, its data contract, training and release policy."""

    source: Literal["digits", "folder"] = Field(
        default="digits",
        description=(
            "digits: scikit-learn's bundled UCI digits, delivered as daily batches into incoming/; "
            "folder: the user's own Parquet or CSV batches in incoming_dir, with holdout_path."
        ),
    )
    incoming_dir: str | None = Field(
        default=None, description="A path or s3://, gs:// URL; default <data_store_url>/<model>/incoming."
    )
    holdout_path: str | None = Field(
        default=None, description="Fixed evaluation set (Parquet or CSV), a path or URL; folder source only."
    )
    suite: str = Field(default="digits", description="Expectation suite: expectations/<suite>.json or a path to a JSON file.")
    label_column: str = "label"
    num_classes: PositiveInt = 10
    input_name: str = Field(default="pixels", description="Name of the SavedModel's input tensor.")
    keep_versions: PositiveInt = Field(default=5, description="Versions with files kept by `tfrelease gc`, besides protected ones.")
    training: TrainingParams = TrainingParams()
    policy: ReleasePolicy = ReleasePolicy()
    monitoring: MonitoringSettings = MonitoringSettings()

    @field_validator("incoming_dir", "holdout_path", mode="before")
    @classmethod
    def _location(cls, value: object) -> object:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            store_path(value)  # an unknown protocol is a settings error
        return value

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
    click_workers: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Clicks the receiver works on at once; more wait in a queue (each is acknowledged at once either way).",
    )
    approver_group_ttl_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description="How long the receiver keeps approver_group's members before reading them again (0: on every click).",
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
    base_paths: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Per model, the base path TF Serving reads its versions from, as the TF Serving host names it "
            "(s3://bucket/prefix/<model>, or /models/<model> inside its container); written into "
            "models.config. Default: <model_store_url>/<model>."
        ),
    )
    reload_timeout_seconds: PositiveFloat = Field(
        default=120.0,
        le=240.0,
        # A switch takes at most a push and a restore (2 x this); the model lock's lease is 600 s.
        description="How long a push may wait for the new versions to become AVAILABLE (at most 240 s).",
    )


class UISettings(_Strict):
    """The release dashboard (``tfrelease ui``), a read-only web app on the registry.

    It has no login of its own: put it behind the company's SSO proxy, and set ``base_url`` to
    the address people reach it at through that proxy.
    """

    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0 in a container behind the proxy).")
    port: int = Field(default=8080, ge=1, le=65535, description="Port to listen on.")
    base_url: str | None = Field(
        default=None,
        description=(
            "The dashboard's address as people reach it (e.g. https://tfrelease.example.com); when set, "
            "Slack messages, Prefect artifacts and `tfrelease show` link to each version's page."
        ),
    )
    page_size: int = Field(default=50, ge=1, le=500, description="Rows per page of the versions, timeline and audit pages.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _http_base_url(value, "https://tfrelease.example.com")

    def version_url(self, model: str, version: int) -> str | None:
        """The dashboard page of ``model`` version ``version`` (``<base_url>/models/<model>/versions/<version>``,
        the model name percent-encoded), or None when ``base_url`` is not set."""
        if self.base_url is None:
            return None
        return f"{self.base_url}/models/{quote(model, safe='')}/versions/{version}"


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
    data_store_url: str | None = Field(
        default=None,
        description=(
            "Where each model's data folders live (<data>/<model>/incoming, accepted, quarantine, holdout.parquet): "
            "a local path, s3:// or gs:// URL, so that a nightly may run on any worker. Default <home>/data."
        ),
    )
    model_store_url: str | None = Field(
        default=None,
        description=(
            "Where SavedModels and models.config live: a local path, s3://bucket/prefix or gs://bucket/prefix "
            "(credentials from the cloud SDK's environment). Default <home>/models."
        ),
    )
    models: dict[str, ModelSettings] = Field(default_factory=lambda: {"digits": ModelSettings()})
    default_model: str = "digits"
    slack: SlackSettings = SlackSettings()
    serving: ServingSettings = ServingSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    prefect_ui_url: str | None = Field(default=None, description="Base URL of the Prefect UI, for links in messages.")
    ui: UISettings = UISettings()

    @model_validator(mode="after")
    def _default_model_exists(self) -> Settings:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not one of the configured models {sorted(self.models)}")
        if unknown := sorted(set(self.serving.base_paths) - set(self.models)):
            raise ValueError(f"serving.base_paths names {unknown}, which are not configured models {sorted(self.models)}")
        return self

    @field_validator("model_store_url", "data_store_url")
    @classmethod
    def _store_url_is_known(cls, url: str | None) -> str | None:
        if url is not None:
            store_path(url)  # an unknown protocol, or s3fs/gcsfs missing, is a settings error
        return url

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
        """Root of the SavedModels: ``<model_store>/<model>/<version>/``; a ``pathlib.Path`` for a
        local store, a ``upath.UPath`` for an object store (see :mod:`core.store_location`)."""
        if self.model_store_url:
            return store_path(self.model_store_url)
        return (self.home / "models").resolve()

    @property
    def serving_config_path(self) -> Path:
        """The TF Serving ``--model_config_file`` written on every promotion (in the model store)."""
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

    def staging_dir(self, model: str) -> Path:
        """``<home>/staging/<model>``: where a night exports ``model``'s new version before
        uploading it to an object store; always on this machine's disk."""
        return (self.home / "staging" / model).resolve()

    def data_dir(self, model: str) -> Path:
        """``<data_store_url>/<model>`` (default ``<home>/data/<model>``): holds incoming/,
        accepted/, quarantine/ and the held-out set; a ``upath.UPath`` on an object store."""
        if self.data_store_url:
            return store_path(self.data_store_url) / model
        return (self.home / "data" / model).resolve()

    def incoming_dir(self, model: str) -> Path:
        """Where new batches for ``model`` arrive."""
        configured = self.model(model).incoming_dir
        return store_path(configured) if configured else self.data_dir(model) / "incoming"

    def holdout_path(self, model: str) -> Path | None:
        """``model``'s configured held-out set (folder source), or None (the bundled one)."""
        configured = self.model(model).holdout_path
        return store_path(configured) if configured else None


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
