"""Settings from the environment: refused when missing or malformed."""

from __future__ import annotations

import pytest

from mapper.errors import ConfigurationError
from mapper.settings import Settings


def test_settings_refuse_missing_project_and_bad_queue():
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        Settings.from_env({})
    with pytest.raises(ConfigurationError, match="MAPPER_QUEUE"):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "MAPPER_QUEUE": "q"})
    with pytest.raises(ConfigurationError, match="refused on App Engine"):
        Settings.from_env(
            {"GOOGLE_CLOUD_PROJECT": "p", "MAPPER_AUTH": "off", "GAE_ENV": "standard"}
        )
