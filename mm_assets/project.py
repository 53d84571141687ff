"""Where the project lives, and the error every config problem raises (shared by all config modules)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "pipeline.yaml"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""
