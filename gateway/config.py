"""The gateway's configuration: one TOML file, strict pydantic models, environment overrides, secret files.

Loading order: the TOML file, then `MEDSHIELD__SECTION__KEY=value` environment variables (a value is typed by
the schema: `MEDSHIELD__GATEWAY__DEVICE_ID=123` stays the string "123", `MEDSHIELD__LIMITS__QUEUE_SIZE=64`
becomes an int; a list takes a TOML array or comma-separated items; an empty value clears an optional key;
every error about an overridden key names its variable), then validation (unknown keys are errors, named by
their dotted path), then secrets: every `*_file` field is read at load time (never at import), relative names
are looked up in systemd's `$CREDENTIALS_DIRECTORY` first.
Secret values live in `SecretStr` and never appear in a repr or a log line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gateway import topics
from gateway.broker import EMBEDDED_BROKER_PORT
from gateway.codecs.types import Limits
from gateway.crypto.sbbe import SEARCH_BOUNDS, SearchParams
from gateway.errors import ConfigError
from gateway.state_layout import DEFAULT_STATE_DIR, StateLayout

ENV_PREFIX = "MEDSHIELD__"
AWS_IOT_MAX_MESSAGE_BYTES = 128 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Strict):
    """TLS towards a broker. `ca_file` alone = server authentication; add cert+key for client certificates."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class BrokerConfig(_Strict):
    """One MQTT broker connection."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Literal["mqtt5", "mqtt311"] = "mqtt5"
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    password: SecretStr | None = Field(default=None, exclude=True)
    tls: TLSConfig | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, Field(ge=1)] = 7 * 24 * 3600
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _no_inline_password(self) -> BrokerConfig:
        # Passwords come from files (or systemd credentials) only, so they never sit in a config file.
        if self.password is not None and self.password_file is None:
            raise ValueError("give password_file (or a systemd credential name), not password")
        return self


class GatewaySection(_Strict):
    device_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    state_dir: Path = DEFAULT_STATE_DIR


class TopicsConfig(_Strict):
    inbound: list[str] = Field(default_factory=lambda: [topics.SCANNER_IMAGES], min_length=1)
    shared_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] | None = None
    cloud: str = topics.CLOUD_TEMPLATE

    @field_validator("inbound")
    @classmethod
    def _filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            if not topic or topic.startswith("$share/"):
                raise ValueError(f"bad topic filter {topic!r} (use shared_group for $share)")
        return value


class SBBEParams(_Strict):
    """The SBBE key search (DESIGN §4): population N, generations G, offspring per generation, sample side."""

    population: Annotated[int, Field(ge=SEARCH_BOUNDS["population"][0], le=SEARCH_BOUNDS["population"][1])] = (
        SearchParams.population
    )
    generations: Annotated[int, Field(ge=SEARCH_BOUNDS["generations"][0], le=SEARCH_BOUNDS["generations"][1])] = (
        SearchParams.generations
    )
    offspring: Annotated[int, Field(ge=SEARCH_BOUNDS["offspring"][0], le=SEARCH_BOUNDS["offspring"][1])] | None = (
        SearchParams.offspring
    )
    sample_side: Annotated[int, Field(ge=SEARCH_BOUNDS["sample_side"][0], le=SEARCH_BOUNDS["sample_side"][1])] = (
        SearchParams.sample_side
    )

    def search_params(self) -> SearchParams:
        """The `gateway.crypto.sbbe.SearchParams` these settings give."""
        return SearchParams(**self.model_dump(exclude_none=True))


class ProtectionConfig(_Strict):
    suite: Literal["sbbe-blowfish", "aes-256-siv"] = "sbbe-blowfish"
    recipients: list[Path] = Field(default_factory=list)
    sbbe: SBBEParams = Field(default_factory=SBBEParams)
    stego_margin_px: Annotated[int, Field(ge=0, le=64)] = 3
    # Which pixels may carry hidden bits (gateway.stego.carriers): only the air outside the body (default,
    # a lesion the segmenter misses is never written to), or every non-lesion pixel (the paper's rule).
    stego_carriers: Literal["outside-body", "non-lesion"] = "outside-body"


class SegmentationConfig(_Strict):
    """DS-Net: `model` null → the committed model; `backend` auto picks the fastest available runner.

    `sessions`: `shared`, one inference session that every protection worker calls, or `per-worker`, one
    each (`gateway.daemon.protect.segmenter_pool`: without `threads`, each with its share of the cores and
    one more with all of them for an image segmented alone); `threads` is per session.
    """

    model: Path | None = None
    backend: Literal["auto", "cpu", "cuda", "tensorrt-ep", "tensorrt"] = "auto"
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    sessions: Literal["shared", "per-worker"] = "per-worker"


MAX_DEFAULT_WORKERS = 4


def default_workers(cores: int | None = None) -> int:
    """Protection workers when the configuration names none: one per usable core, capped. On the 2-core EPYC
    two workers gave 1.32x the images/s of one (issue 16); past a few, the GIL and the shared inference
    session take the gain."""
    from gateway.resources import usable_cores

    return max(1, min(cores if cores is not None else usable_cores(), MAX_DEFAULT_WORKERS))


class LimitsConfig(_Strict):
    """What one input may cost (defaults: `gateway.codecs.Limits`, which `medshield protect` uses too) and how
    much work the daemon holds at once."""

    max_bytes: Annotated[int, Field(ge=1)] = Limits.max_bytes
    max_pixels: Annotated[int, Field(ge=1)] = Limits.max_pixels
    max_side: Annotated[int, Field(ge=1)] = Limits.max_side
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 32
    # Default: one per usable core, at most MAX_DEFAULT_WORKERS (`default_workers`).
    workers: int = Field(default_factory=lambda: default_workers(), ge=1, le=64)
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    # Starts of one message cut short by the process dying (a kill, a power cut, or the message itself
    # crashing the decoder): counted apart from faults, with a higher bound, so unrelated restarts do not
    # quarantine a valid image while a message that kills the daemon still ends in quarantine.
    max_interrupted: Annotated[int, Field(ge=1, le=100)] = 5
    # Payload bytes held between the scanner broker and the workers (beyond it, messages wait at the broker).
    queue_bytes: Annotated[int, Field(ge=1)] = 256 * 1024 * 1024

    def input_limits(self) -> Limits:
        """The codec limits these settings give."""
        return Limits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, max_side=self.max_side)


class SpoolConfig(_Strict):
    path: Path | None = None
    max_bytes: Annotated[int, Field(ge=1024)] = 2 * 1024 * 1024 * 1024
    publish_window: Annotated[int, Field(ge=1, le=1000)] = 16
    # Intake pauses while the state disk has less than this left (null: twice limits.max_bytes + 16 MiB).
    min_free_bytes: Annotated[int, Field(ge=0)] | None = None
    flush_timeout_s: Annotated[float, Field(ge=0)] = 10.0


class TelemetryConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] | None = 9464


class LedgerConfig(_Strict):
    """The signed envelope ledger (DESIGN §9); the Ed25519 key is created on first start if missing."""

    enabled: bool = True
    key_file: Path | None = None
    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 60.0
    """A signed checkpoint (count, head hash) is queued this often while entries are added, and on shutdown."""


class EmbeddedBrokerConfig(_Strict):
    """The mosquitto the gateway starts when `inbound` or `cloud` is not configured: loopback only, on a fixed
    port so scanners on this host can publish to it (0: any free port, for tests)."""

    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = EMBEDDED_BROKER_PORT


class CloudSection(BrokerConfig):
    max_message_bytes: Annotated[int, Field(ge=1024)] = AWS_IOT_MAX_MESSAGE_BYTES


class DicomTLSConfig(_Strict):
    """TLS on the C-STORE listener (DICOM PS3.15 secure transport): the gateway's certificate and key; with
    `ca_file`, clients must present a certificate that this CA signed."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


class DicomListenerConfig(_Strict):
    """The DICOM C-STORE intake (pynetdicom): off while `port` is null.

    Empty allow-lists admit any calling AE title / host; otherwise an association from elsewhere is refused.
    Hosts are IP addresses or networks (`10.1.0.0/16`).
    """

    ae_title: Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[^\\\s][^\\]*$")] = "MEDSHIELD"
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    allowed_calling_ae_titles: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    tls: DicomTLSConfig | None = None
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 16
    network_timeout_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _hosts_parse(self) -> DicomListenerConfig:
        import ipaddress

        for host in self.allowed_hosts:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowed_hosts: {host!r} is not an IP address or network") from exc
        return self


class GatewayConfig(_Strict):
    """The whole configuration file. `inbound`/`cloud` null → the embedded broker on 127.0.0.1."""

    gateway: GatewaySection
    inbound: BrokerConfig | None = None
    cloud: CloudSection | None = None
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    protection: ProtectionConfig = Field(default_factory=ProtectionConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    dicom: DicomListenerConfig = Field(default_factory=DicomListenerConfig)
    embedded_broker: EmbeddedBrokerConfig = Field(default_factory=EmbeddedBrokerConfig)

    @property
    def state(self) -> StateLayout:
        """What lives where under `gateway.state_dir`."""
        return StateLayout(self.gateway.state_dir)

    @property
    def spool_path(self) -> Path:
        return self.spool.path or self.state.spool

    @property
    def quarantine_dir(self) -> Path:
        return self.state.quarantine

    @property
    def cloud_topic(self) -> str:
        return self.topics.cloud.format(device_id=self.gateway.device_id)

    @property
    def status_topic(self) -> str:
        return topics.gateway_topic(self.gateway.device_id, topics.STATUS)

    @property
    def ledger_topic(self) -> str:
        return topics.gateway_topic(self.gateway.device_id, topics.LEDGER)

    @property
    def ledger_key_path(self) -> Path:
        return self.ledger.key_file or self.state.ledger_key

    @property
    def spool_min_free_bytes(self) -> int:
        if self.spool.min_free_bytes is not None:
            return self.spool.min_free_bytes
        return 2 * self.limits.max_bytes + 16 * 1024 * 1024

    @property
    def message_key_path(self) -> Path:
        """The gateway secret that keys message ids (created 0600 on first start)."""
        return self.state.message_key

    @property
    def errors_topic(self) -> str:
        return topics.gateway_topic(self.gateway.device_id, topics.ERRORS)

    def inbound_filters(self) -> list[str]:
        """The subscription filters, wrapped in `$share/<group>/` when a shared group is set."""
        group = self.topics.shared_group
        return [f"$share/{group}/{t}" if group else t for t in self.topics.inbound]


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True  # noqa: UP007 - built at run time
    return annotation, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _env_value(variable: str, path: list[str], raw: str) -> Any:
    """The value of one override, typed by the schema field at `path` (pydantic then validates it)."""
    model: type[BaseModel] = GatewayConfig
    for depth, key in enumerate(path):
        dotted = ".".join(path[: depth + 1])
        field = model.model_fields.get(key)
        if field is None:
            raise ConfigError(f"{dotted}: unknown key (environment variable {variable})")
        inner, optional = _strip_optional(field.annotation)
        if depth < len(path) - 1:
            if not _is_model(inner):
                raise ConfigError(f"{dotted}: not a table, it has no keys (environment variable {variable})")
            model = inner
            continue
        if _is_model(inner):
            raise ConfigError(f"{dotted}: is a table; set its keys, e.g. {variable}__KEY")
        if raw == "" and optional:
            return None
        if get_origin(inner) is list:
            if raw.lstrip().startswith("["):
                try:
                    return tomllib.loads(f"v = {raw}")["v"]
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigError(f"{dotted}: not a TOML array ({exc}) (environment variable {variable})") from None
            return [item.strip() for item in raw.split(",") if item.strip()]
        # Scalars go to pydantic as text: it parses ints, floats, booleans and paths, and keeps strings.
        return raw
    raise ConfigError(f"{variable}: empty key in environment override")


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str], sources: dict[str, str] | None = None
) -> dict[str, Any]:
    """Return a copy of `data` with `MEDSHIELD__A__B=v` set at `data["a"]["b"]` (keys lower-cased), typed by
    the schema. `sources`, when given, receives dotted key → variable name for error messages."""
    out: dict[str, Any] = _deep_copy(data)
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"{name}: empty key in environment override")
        value = _env_value(name, path, environ[name])
        node = out
        for key in path[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        node[path[-1]] = value
        if sources is not None:
            sources[".".join(path)] = name
    return out


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _format_validation_error(exc: ValidationError, sources: Mapping[str, str] | None = None) -> str:
    lines = []
    sources = sources or {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc) or "(root)"
        kind = err["type"]
        message = "unknown key" if kind == "extra_forbidden" else err["msg"]
        variable = next(
            (sources[".".join(loc[:n])] for n in range(len(loc), 0, -1) if ".".join(loc[:n]) in sources), None
        )
        lines.append(f"{path}: {message}" + (f" (environment variable {variable})" if variable else ""))
    return "; ".join(lines)


def resolve_secret_path(path: Path, environ: Mapping[str, str]) -> Path:
    """A secret file: relative names are systemd credentials when $CREDENTIALS_DIRECTORY holds them."""
    if not path.is_absolute():
        creds = environ.get("CREDENTIALS_DIRECTORY")
        if creds and (Path(creds) / path).is_file():
            return Path(creds) / path
    return path


def read_secret(path: Path, key: str, environ: Mapping[str, str]) -> SecretStr:
    """Read one secret file (or systemd credential); `key` names the setting in errors."""
    real = resolve_secret_path(path, environ)
    try:
        value = real.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"{key}: secret file is empty")
    return SecretStr(value)


def _with_secrets(config: GatewayConfig, environ: Mapping[str, str]) -> GatewayConfig:
    updates: dict[str, Any] = {}
    for section in ("inbound", "cloud"):
        broker = getattr(config, section)
        if broker is not None and broker.password_file is not None:
            secret = read_secret(broker.password_file, f"{section}.password_file", environ)
            updates[section] = broker.model_copy(update={"password": secret})
    return config.model_copy(update=updates) if updates else config


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Validate a configuration mapping (with environment overrides) and read its secret files."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    merged = apply_env_overrides(dict(data), env, sources)
    for section in ("inbound", "cloud"):
        if isinstance(merged.get(section), dict) and "password" in merged[section]:
            raise ConfigError(f"{section}.password: give password_file (or a systemd credential), not password")
    try:
        config = GatewayConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, sources)) from None
    return _with_secrets(config, env)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, override, validate and complete the TOML file at `path`. Errors: `ConfigError` naming the key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, environ)
