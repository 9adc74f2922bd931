"""`python -m apps.dashboard`: serve on APP_PORT (set by `dapr run` and `vigil up`)."""

import uvicorn

from apps.dashboard.settings import get_settings

uvicorn.run("apps.dashboard.app:app", host="127.0.0.1", port=get_settings().port, log_level="warning")
