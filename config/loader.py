"""Load YAML into the typed config tree, reporting every problem as ``file:line field.path: message``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from config.models import EvalwatchConfig, RoomConfig

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A config file could not be used.  ``problems`` holds one human-readable line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _path_str(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node along ``loc`` (pydantic's error location)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        if nxt is None:
            # e.g. a missing field or a validator tag: stay on the enclosing node.
            continue
        node = nxt
        line = node.start_mark.line + 1
    return line


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read: {e}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML: {e.problem}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: invalid YAML: {e}"]) from None
    return data, node


def _validate(model: type[M], data: Any, node: yaml.Node | None, path: Path, prefix: str = "") -> M:
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if p not in ("function-after", "tagged-union"))
            line = _line_of(node, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            where = f"{path.name}:{line}" if line else path.name
            problems.append(f"{where} {prefix}{_path_str(loc)}: {msg}")
        raise ConfigError(problems) from None


def load_config(path: str | Path, *, load_secrets: bool = True) -> EvalwatchConfig:
    """Load and validate a full config file.

    With ``load_secrets`` the secrets file (``secrets_file``) is read — and created with fresh
    random values where missing — so every credential field is filled.  Environment variables
    ``EVALWATCH_DATABASE_URL`` and ``EVALWATCH_S3_ENDPOINT`` override the file (handy for
    pointing a test run at PostgreSQL or an external MinIO).
    """
    path = Path(path)
    data, node = _read_yaml(path)
    base = path.resolve().parent
    _include_rooms(data, base)
    cfg = _validate(EvalwatchConfig, data, node, path)
    _resolve_dirs(cfg, base)
    if url := os.environ.get("EVALWATCH_DATABASE_URL"):
        cfg.storage.database_url = url
    if endpoint := os.environ.get("EVALWATCH_S3_ENDPOINT"):
        cfg.storage.s3.endpoint = endpoint
        cfg.storage.s3.embedded = False
    if load_secrets and cfg.secrets_file:
        apply_secrets(cfg, cfg.resolve_path(cfg.secrets_file, base))
    return cfg


def load_room(path: str | Path) -> RoomConfig:
    """Load a room section (cameras + seats) from its own YAML file."""
    path = Path(path)
    data, node = _read_yaml(path)
    return _validate(RoomConfig, data, node, path)


def _include_rooms(data: Any, base: Path) -> None:
    """Replace each room given as a file name (``rooms: [room_a.room.yaml]``) by its contents.

    Room files are the same files ``evalwatch analyze --room`` reads.  A relative camera source
    in a room file is looked up beside the room file, then in its parent folders (so a room file
    can name ``sample_videos/x.mp4`` from the project root), then relative to the config file.
    """
    if not isinstance(data, dict) or not isinstance(data.get("sites"), list):
        return
    problems: list[str] = []
    for site in data["sites"]:
        rooms = site.get("rooms") if isinstance(site, dict) else None
        if not isinstance(rooms, list):
            continue
        for i, item in enumerate(rooms):
            if not isinstance(item, str):
                continue
            room_path = base / item
            try:
                room = load_room(room_path)
            except ConfigError as e:
                problems.extend(e.problems)
                continue
            for cam in room.cameras:
                src = cam.source
                if src and "://" not in src and not src.startswith("device:") and not Path(src).is_absolute():
                    cam.source = str(_find_relative(src, room_path.resolve().parent, base))
            rooms[i] = room.model_dump(mode="json", exclude_none=True)
    if problems:
        raise ConfigError(problems)


def _find_relative(src: str, room_dir: Path, base: Path) -> Path:
    """``src`` beside the room file, else in one of its parent folders, else beside the config."""
    for folder in (room_dir, *room_dir.parents, base):
        if (folder / src).exists():
            return folder / src
    return room_dir / src


def _resolve_dirs(cfg: EvalwatchConfig, base: Path) -> None:
    """Make data paths absolute relative to the config file's folder (not the caller's cwd)."""
    st = cfg.storage
    st.data_dir = str(cfg.resolve_path(st.data_dir, base))
    st.wal_dir = str(cfg.resolve_path(st.wal_dir, base))
    st.s3.embedded_server.dir = str(cfg.resolve_path(st.s3.embedded_server.dir, base))
    cfg.capture.spool_dir = str(cfg.resolve_path(cfg.capture.spool_dir, base))
    prefix = "sqlite:///"
    if st.database_url.startswith(prefix) and not st.database_url.startswith(prefix + "/"):
        rel = st.database_url[len(prefix) :]
        if rel != ":memory:":
            st.database_url = prefix + str(cfg.resolve_path(rel, base))
    if cfg.detection.model_path:
        cfg.detection.model_path = str(cfg.resolve_path(cfg.detection.model_path, base))
    if cfg.hub.log_file:
        cfg.hub.log_file = str(cfg.resolve_path(cfg.hub.log_file, base))
    if cfg.hub.tls_cert and cfg.hub.tls_key:
        cfg.hub.tls_cert = str(cfg.resolve_path(cfg.hub.tls_cert, base))
        cfg.hub.tls_key = str(cfg.resolve_path(cfg.hub.tls_key, base))
    smtp = cfg.notifications.smtp
    if smtp is not None and smtp.ca_file:
        smtp.ca_file = str(cfg.resolve_path(smtp.ca_file, base))
    for site in cfg.sites:
        if site.hub_ca_file:
            site.hub_ca_file = str(cfg.resolve_path(site.hub_ca_file, base))
    for _site, _room, cam in cfg.cameras():
        if cam.source and "://" not in cam.source and not cam.source.startswith("device:"):
            cam.source = str(cfg.resolve_path(cam.source, base))


def _token() -> str:
    return secrets.token_urlsafe(24)


def apply_secrets(cfg: EvalwatchConfig, secrets_path: Path) -> None:
    """Fill unset credentials from ``secrets_path``, generating and saving any that are missing.

    The file is written with mode 0600.  Values set explicitly in the config win.
    """
    stored: dict[str, Any] = {}
    if secrets_path.exists():
        try:
            stored = yaml.safe_load(secrets_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError([f"{secrets_path}: invalid YAML: {e}"]) from None
        if not isinstance(stored, dict):
            raise ConfigError([f"{secrets_path}: expected a mapping of secret names to values"])
    changed = False

    def take(name: str, current: SecretStr | None) -> SecretStr:
        nonlocal changed
        if current is not None:
            return current
        if name not in stored:
            stored[name] = _token()
            changed = True
        return SecretStr(str(stored[name]))

    cfg.hub.secret_key = take("hub.secret_key", cfg.hub.secret_key)
    cfg.storage.s3.access_key = take("s3.access_key", cfg.storage.s3.access_key)
    cfg.storage.s3.secret_key = take("s3.secret_key", cfg.storage.s3.secret_key)
    anchor = cfg.storage.anchor
    if anchor is not None:
        if anchor.embedded:
            anchor.access_key = take("anchor.access_key", anchor.access_key)
            anchor.secret_key = take("anchor.secret_key", anchor.secret_key)
        else:  # an external store's keys are given, never generated
            missing = []
            for field in ("access_key", "secret_key"):
                if getattr(anchor, field) is None and f"anchor.{field}" in stored:
                    setattr(anchor, field, SecretStr(str(stored[f"anchor.{field}"])))
                if getattr(anchor, field) is None:
                    missing.append(
                        f"storage.anchor.{field}: required for an external anchor store (in the "
                        f"config or the secrets file {secrets_path} as anchor.{field})"
                    )
            if missing:
                raise ConfigError(missing)
    for site in cfg.sites:
        site.agent_token = take(f"sites.{site.id}.agent_token", site.agent_token)
    for user in cfg.users:
        user.password = take(f"users.{user.username}.password", user.password)
    for site in cfg.sites:  # notification secrets (docs/notifications.md)
        for target in site.notify:
            name = f"sites.{site.id}.notify.{target.id}.secret"
            if target.channel == "webhook":  # always signed: a key is generated when missing
                target.secret = take(name, target.secret)
            elif target.channel == "dingtalk" and target.secret is None and name in stored:
                target.secret = SecretStr(str(stored[name]))  # the robot's own secret, never made up
    smtp = cfg.notifications.smtp
    if smtp is not None and smtp.password is None and "notifications.smtp.password" in stored:
        smtp.password = SecretStr(str(stored["notifications.smtp.password"]))
    if changed:
        secrets_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = secrets_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# evalwatch generated secrets - keep private, never commit\n")
            yaml.safe_dump(stored, f, allow_unicode=True, sort_keys=True)
        os.replace(tmp, secrets_path)
