"""`python -m apps.gateway`: serve on APP_PORT (set by `dapr run` and `vigil up`) at VIGIL_HOST."""

import uvicorn

from apps.gateway.settings import get_settings

settings = get_settings()
uvicorn.run("apps.gateway.app:app", host=settings.host, port=settings.port, log_level="warning")
