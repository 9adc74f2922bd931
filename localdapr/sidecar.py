"""One Dapr sidecar: its components, its HTTP and gRPC APIs, its app channel and subscriptions.

The app channel speaks the app protocol (`http`, or `grpc` for an app serving AppCallback); with app
health checks on, subscriptions and input bindings run only while the app is healthy, as in daprd.

Several sidecars can live in one process (the launcher hosts one per app) or each in its own
process (`python -m localdapr sidecar ...`, used by tests that stop and restart a sidecar).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from localdapr import __version__, inprocess
from localdapr.acl import DEFAULT_NAMESPACE, DEFAULT_TRUST_DOMAIN, AccessControl, spiffe_id
from localdapr.actors import ActorSubsystem
from localdapr.api import grpc as grpc_api
from localdapr.api import http as http_api
from localdapr.api.context import ApiContext
from localdapr.appchannel import APP_PROTOCOLS, AppChannel, GrpcAppChannel, open_channel
from localdapr.apphealth import AppHealth, AppHealthConfig
from localdapr.bindings.delivery import AppSink, GrpcAppSink, HttpAppSink, InputDelivery
from localdapr.components.spec import load_configuration, load_resources
from localdapr.context import SidecarContext
from localdapr.errors import ComponentError
from localdapr.invocation.internal import Callee
from localdapr.invocation.invoke import Invoker
from localdapr.invocation.nameresolution import AppInstance, NameRegistry
from localdapr.ports import free_port
from localdapr.pubsub.delivery import GrpcTopicSink, HttpTopicSink, Subscriber, TopicSink
from localdapr.pubsub.streaming import StreamingSubscriptions
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime
from localdapr.telemetry import Telemetry
from localdapr.telemetry.api import GrpcObserver, http_middleware
from localdapr.trust import SidecarTrust

log = logging.getLogger("localdapr")

RUNTIME_VERSION = f"localdapr-{__version__}"


@dataclass(slots=True)
class SidecarOptions:
    app_id: str
    resources_paths: list[Path]
    app_port: int | None = None
    app_protocol: str = "http"  # or "grpc": the app serves AppCallback (--app-protocol)
    app_health: AppHealthConfig | None = None  # None: no app health checks (--enable-app-health-check)
    http_port: int = 0  # 0 = pick a free port
    grpc_port: int = 0
    metrics_port: int | None = 0  # daprd's --metrics-port (0 = pick a free port); None: no metrics port
    config_file: Path | None = None
    registry_dir: Path | None = None
    app_host: str = "127.0.0.1"
    api_token: str | None = None  # DAPR_API_TOKEN: required from apps on every API call
    app_api_token: str | None = None  # APP_API_TOKEN: sent to the app on every call
    app_wait_timeout: float = 120.0
    max_body_bytes: int = 4 * 1024 * 1024
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def app_env(self) -> dict[str, str]:
        """The environment `dapr run` gives the app (contract 7.2)."""
        env = {
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "APP_ID": self.app_id,
            "APP_PROTOCOL": self.app_protocol,
            "APP_CHANNEL_ADDRESS": self.app_host,
        }
        if self.app_port:
            env["APP_PORT"] = str(self.app_port)
        if self.api_token:
            env["DAPR_API_TOKEN"] = self.api_token
        if self.app_api_token:  # so the app can tell its sidecar's calls from anyone else's
            env["APP_API_TOKEN"] = self.app_api_token
        return env


def _app_sinks(channel: AppChannel, runtime: DaprRuntime) -> tuple[TopicSink, AppSink]:
    """Pub/sub and input bindings reach the app the way its protocol does (the one place that asks)."""
    if isinstance(channel, GrpcAppChannel):
        return GrpcTopicSink(runtime.app_id, channel), GrpcAppSink(channel, runtime)
    return HttpTopicSink(runtime.app_id, channel), HttpAppSink(channel)


class Sidecar:
    def __init__(self, options: SidecarOptions) -> None:
        if options.app_protocol not in APP_PROTOCOLS:
            raise ComponentError(
                f"app protocol {options.app_protocol!r} is not supported by localdapr "
                f"(use one of: {', '.join(APP_PROTOCOLS)})"
            )
        if options.app_health is not None:
            try:
                options.app_health.validate()
            except ValueError as exc:
                raise ComponentError(f"invalid app health check settings: {exc}") from exc
        if not options.http_port:
            options.http_port = free_port()
        if not options.grpc_port:
            options.grpc_port = free_port()
        if options.metrics_port == 0:
            options.metrics_port = free_port()
        self.options = options
        self.resources = load_resources(options.resources_paths)
        self.configuration = load_configuration(options.config_file)
        self.resiliency = Resiliency.from_documents(self.resources.resiliency, options.app_id)
        self.runtime = DaprRuntime(
            options.app_id, self.resources, self.configuration, resiliency=self.resiliency
        )
        self.runtime.telemetry = Telemetry(
            options.app_id, self.configuration.raw, options.metrics_port, str(options.config_file or "")
        )
        self.access_control = AccessControl.from_configuration(
            self.configuration.raw, str(options.config_file or "configuration")
        )
        self.registry = NameRegistry(options.registry_dir)
        self.trust = SidecarTrust(self.registry.folder, self._identity())
        self.invoker = Invoker(options.app_id, self.registry, self.resiliency, self.trust)
        self.channel: AppChannel | None = None
        self.subscriber: Subscriber | None = None
        self.input_bindings: InputDelivery | None = None
        self.health: AppHealth | None = None
        self.streams = StreamingSubscriptions(self.runtime, self.resiliency)  # need no app channel
        if options.app_port:
            self.channel = open_channel(
                options.app_protocol,
                options.app_id,
                options.app_host,
                options.app_port,
                options.app_api_token,
                options.app_health.check_path if options.app_health else "/healthz",
            )
            topics, bindings = _app_sinks(self.channel, self.runtime)
            self.subscriber = Subscriber(self.runtime, topics, self.resiliency)
            self.input_bindings = InputDelivery(self.runtime, bindings, self.resiliency)
            if options.app_health is not None:
                self.health = AppHealth(
                    options.app_id, options.app_health, self.channel.probe, self._app_health_changed
                )
        self.instance = AppInstance(
            app_id=options.app_id,
            instance_id=options.instance_id,
            host="127.0.0.1",
            app_port=options.app_port,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            pid=os.getpid(),
            app_protocol=options.app_protocol,
            # With health checks the app is unhealthy until its first probe succeeds, as in daprd.
            app_healthy=self.health is None,
        )
        self.context = SidecarContext(
            app_id=options.app_id,
            instance=self.instance,
            registry=self.registry,
            resiliency=self.resiliency,
            runtime=self.runtime,
            configuration=self.configuration,
            channel=self.channel,
            trust=self.trust,
        )
        self.actors = ActorSubsystem(self.context)
        self.components_ready = False
        self.app_ready = False
        self.stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._init_task: asyncio.Task[None] | None = None
        self._app_initialised = False

    @property
    def app_id(self) -> str:
        return self.options.app_id

    def _identity(self) -> str:
        """This sidecar's SPIFFE id, as Sentry would write it into daprd's certificate: the trust domain
        of its Configuration's accessControl, the namespace of NAMESPACE (daprd's "default" without)."""
        access = self.configuration.raw.get("accessControl") or {}
        trust_domain = str(access.get("trustDomain") or DEFAULT_TRUST_DOMAIN)
        namespace = os.environ.get("NAMESPACE") or DEFAULT_NAMESPACE
        return spiffe_id(trust_domain, namespace, self.options.app_id)

    def _api_context(self) -> ApiContext:
        """What the HTTP and gRPC APIs serve from: the parts, and this sidecar only as their Lifecycle."""
        return ApiContext(
            runtime=self.runtime,
            invoker=self.invoker,
            actors=self.actors,
            streams=self.streams,
            channel=self.channel,
            lifecycle=self,
            api_token=self.options.api_token,
            max_body_bytes=self.options.max_body_bytes,
            trust=self.trust,
            access_control=self.access_control,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load components and open both API ports; the app is initialised in the background."""
        await self.runtime.load_components()
        api = self._api_context()
        try:
            app = http_api.build_app(api)
            app.middlewares.insert(0, http_middleware(self.runtime.telemetry))  # outermost: every answer
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.options.http_port).start()
            self._grpc = grpc.aio.server(
                interceptors=[GrpcObserver(self.runtime.telemetry)],
                options=[("grpc.max_receive_message_length", self.options.max_body_bytes)],
            )
            grpc_api.register(self._grpc, api)
            self._grpc.add_insecure_port(f"127.0.0.1:{self.options.grpc_port}")
            await self._grpc.start()
            await self.runtime.telemetry.start()
        except BaseException:
            await self.stop()
            raise
        self.components_ready = True
        # Other sidecars of this process hand actor calls and invocations over in memory (inprocess.py).
        inprocess.register(
            self.instance.instance_id,
            inprocess.InProcessSidecar(
                asyncio.get_running_loop(),
                self.runtime.telemetry,
                self.trust,
                router=self.actors.router,
                callee=Callee(self.app_id, self.access_control, self.channel),
            ),
        )
        self.registry.announce(self.instance)
        log.info(
            "[%s] sidecar up: HTTP %d, gRPC %d, metrics %s, components: %s",
            self.app_id,
            self.options.http_port,
            self.options.grpc_port,
            self.options.metrics_port or "off",
            ", ".join(c["name"] for c in self.runtime.components_metadata()) or "none",
        )
        if self.channel is None:
            self.app_ready = True
        else:
            self._init_task = asyncio.create_task(self._init_app())

    async def _init_app(self) -> None:
        assert self.channel is not None
        if not await self.channel.wait_ready(self.options.app_wait_timeout, self.stopped):
            if not self.stopped.is_set():
                log.error("[%s] app did not open port %s in time", self.app_id, self.options.app_port)
            return
        if self.health is None:
            await self._app_health_changed(True)
        else:
            # daprd completes the app's initialisation at its first healthy probe.
            self.health.start()

    async def _app_health_changed(self, healthy: bool) -> None:
        """Start delivery when the app is (again) healthy; stop it while it is not, as daprd does."""
        assert self.subscriber is not None and self.input_bindings is not None and self.channel is not None
        self.instance.app_healthy = healthy
        self.registry.announce(self.instance)
        if not healthy:
            await self.subscriber.stop()
            await self.input_bindings.stop()
            return
        try:
            if not self._app_initialised and self.channel.hosts_actors:
                await self.actors.on_app_ready()
            await self.subscriber.start(self.resources.subscriptions)
            await self.input_bindings.start()
        except Exception:
            log.exception("[%s] initialising the app channel failed", self.app_id)
            self.request_shutdown()
            return
        if not self._app_initialised:
            self._app_initialised = True
            self.app_ready = True
            self.registry.announce(self.instance)  # the actor types are known now
            log.info(
                "[%s] app channel (%s) ready on port %s",
                self.app_id,
                self.options.app_protocol,
                self.options.app_port,
            )

    async def wait_app_ready(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.app_ready and loop.time() < deadline and not self.stopped.is_set():
            await asyncio.sleep(0.05)
        return self.app_ready

    def request_shutdown(self) -> None:
        self.stopped.set()

    async def stop(self) -> None:
        self.stopped.set()
        inprocess.unregister(self.instance.instance_id)
        self.registry.withdraw(self.instance)
        if self._init_task is not None:
            self._init_task.cancel()
            await asyncio.gather(self._init_task, return_exceptions=True)
        if self.health is not None:
            await self.health.stop()
        if self.subscriber is not None:
            await self.subscriber.stop()
        if self.input_bindings is not None:
            await self.input_bindings.stop()
        await self.streams.close()
        await self.actors.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=0.5)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.runtime.close()
        await self.runtime.telemetry.stop()
        if self.channel is not None:
            await self.channel.close()
        await self.invoker.close()
        self.components_ready = False
        self.app_ready = False

    # ------------------------------------------------------------------ metadata
    def metadata_json(self) -> dict[str, Any]:
        subs: list[dict[str, Any]] = []
        if self.subscriber is not None:
            for a in self.subscriber.active:
                entry: dict[str, Any] = {
                    "pubsubname": a.spec.pubsub_name,
                    "topic": a.spec.topic,
                    "metadata": a.spec.metadata,
                    "rules": [{"match": r.match, "path": r.path} for r in a.spec.rules],
                }
                if a.spec.dead_letter_topic:
                    entry["deadLetterTopic"] = a.spec.dead_letter_topic
                entry["type"] = "PROGRAMMATIC" if a.spec.source == "programmatic" else "DECLARATIVE"
                subs.append(entry)
        subs += self.streams.metadata()
        # Labels first: daprd writes daprRuntimeVersion last, so an app cannot override it.
        extended = {**self.runtime.extended_metadata, "daprRuntimeVersion": RUNTIME_VERSION}
        return {
            "id": self.app_id,
            "runtimeVersion": RUNTIME_VERSION,
            "enabledFeatures": [k for k, v in self.configuration.features.items() if v],
            "actors": [{"type": t, "count": n} for t, n in self.actors.active_counts().items()],
            "components": self.runtime.components_metadata(),
            "subscriptions": subs,
            "httpEndpoints": [],
            "extended": extended,
            "appConnectionProperties": self._app_connection_properties(),
        }

    def _app_connection_properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "port": self.options.app_port or 0,
            "protocol": self.options.app_protocol,
            "channelAddress": self.options.app_host,
        }
        if self.options.app_health is not None:
            properties["health"] = self.options.app_health.metadata(self.options.app_protocol)
        return properties
