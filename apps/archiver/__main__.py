"""`python -m apps.archiver`: serve on APP_PORT (set by `dapr run` and `vigil up`)."""

import uvicorn

from apps.archiver.settings import get_settings

uvicorn.run("apps.archiver.app:app", host="127.0.0.1", port=get_settings().port, log_level="warning")
