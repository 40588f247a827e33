"""Typed configuration: one pydantic tree loaded from YAML (see ``config/default.yaml``)."""

from config.loader import ConfigError, apply_secrets, load_config, load_room
from config.models import (
    CameraConfig,
    CaptureConfig,
    DetectionConfig,
    EvalwatchConfig,
    HubConfig,
    RoomConfig,
    RulesConfig,
    S3Config,
    SeatConfig,
    SiteConfig,
    StorageConfig,
    UserConfig,
)

__all__ = [
    "CameraConfig",
    "CaptureConfig",
    "ConfigError",
    "DetectionConfig",
    "EvalwatchConfig",
    "HubConfig",
    "RoomConfig",
    "RulesConfig",
    "S3Config",
    "SeatConfig",
    "SiteConfig",
    "StorageConfig",
    "UserConfig",
    "apply_secrets",
    "load_config",
    "load_room",
]
