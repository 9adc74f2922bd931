"""The `telemetry=` every app's FastAPI is built with: FastAPI's native OpenTelemetry switched off.

FastAPI (0.165) checks on every request whether its OpenTelemetry instrumentation should run: with the
default settings that asks opentelemetry for the global tracer, meter and logger providers, each of
which reads os.environ, a few per cent of an app's CPU per request. No Vigil app uses OpenTelemetry
(their traces are W3C trace-context headers, apps/common/tracecontext.py; their metrics are
apps/common/metrics.py), so every signal is off and that check is a few dict lookups.
"""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

# With no signal on, FastAPI neither starts spans nor adds exporters at start-up, whatever the
# OTEL_* / FASTAPI_OTEL_AUTO_CONFIGURE environment says.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
