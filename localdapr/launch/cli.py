"""Command line: `up` runs a multi-app template; `sidecar` runs one sidecar the way daprd is run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from localdapr.errors import ComponentError


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="localdapr   | %(message)s",
        stream=sys.stdout,
    )


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default="dapr.yaml", help="run template (default: dapr.yaml)")
    parser.add_argument(
        "--resources",
        action="append",
        type=Path,
        help="components folder for every app (default: components/embedded beside the template when it "
        "exists; components/ is the Redis profile)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="short for --resources components/NAME (redis: components/ itself); see `doctor`",
    )
    parser.add_argument(
        "--replicas", action="append", default=[], metavar="APP=N", help="instances of an app"
    )
    parser.add_argument("--log-level", default="info")


def run_up(args: argparse.Namespace) -> int:
    from localdapr.launch.launcher import Launcher, run
    from localdapr.launch.runfile import load_run_template
    from localdapr.secretsfile import SecretsTemplateError, ensure_secrets_file

    _setup_logging(args.log_level)
    try:
        template = load_run_template(Path(args.file))
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    resources = args.resources
    if args.profile:
        from localdapr.doctor import profile_path

        if resources:
            print("error: give --profile or --resources, not both", file=sys.stderr)
            return 2
        try:
            resources = [profile_path(template.file.parent, args.profile)]
        except ComponentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        # The secret store's file is not committed: a fresh clone makes it from its template here.
        if ensure_secrets_file(template.file.parent / "components" / "secrets.json"):
            print(f"created {template.file.parent / 'components' / 'secrets.json'} (new local secrets)")
    except (SecretsTemplateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if resources is None:
        embedded = template.file.parent / "components" / "embedded"
        resources = [embedded] if embedded.is_dir() else None
    replicas: dict[str, int] = {}
    for item in args.replicas:
        name, _, count = item.partition("=")
        if not count.isdigit() or int(count) < 1:
            print(f"error: --replicas expects APP=N with N >= 1, got {item!r}", file=sys.stderr)
            return 2
        replicas[name] = int(count)
    return asyncio.run(run(Launcher(template, resources, replicas=replicas)))


async def _run_sidecar(args: argparse.Namespace) -> int:
    from localdapr.apphealth import AppHealthConfig
    from localdapr.components.spec import default_resources_path
    from localdapr.launch.launcher import tune_garbage_collector
    from localdapr.sidecar import Sidecar, SidecarOptions

    resources = [Path(p) for p in args.resources_path or []]
    if not resources:
        resources = [default_resources_path()]
        logging.getLogger("localdapr").info(
            "no --resources-path: loading %s, the default of `dapr run` (written by `dapr init`)",
            resources[0],
        )
    options = SidecarOptions(
        app_id=args.app_id,
        resources_paths=resources,
        app_port=args.app_port or None,
        app_protocol=args.app_protocol,
        app_health=AppHealthConfig(
            check_path=args.app_health_check_path,
            probe_interval=args.app_health_probe_interval,
            probe_timeout=args.app_health_probe_timeout / 1000,
            threshold=args.app_health_threshold,
        )
        if args.enable_app_health_check
        else None,
        http_port=args.dapr_http_port,
        metrics_port=args.metrics_port if args.enable_metrics else None,
        grpc_port=args.dapr_grpc_port,
        config_file=Path(args.config) if args.config else None,
        registry_dir=Path(args.registry) if args.registry else None,
        api_token=os.environ.get("DAPR_API_TOKEN") or None,
        app_api_token=os.environ.get("APP_API_TOKEN") or None,
    )
    sidecar = Sidecar(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sidecar.request_shutdown)
    await sidecar.start()
    tune_garbage_collector()
    print(
        f"localdapr sidecar {args.app_id} ready: HTTP {options.http_port} gRPC {options.grpc_port}",
        flush=True,
    )
    await sidecar.stopped.wait()
    await sidecar.stop()
    return 0


def run_sidecar(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        return asyncio.run(_run_sidecar(args))
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _flag(value: str) -> bool:
    """A boolean flag's value as Go's flag package reads `--flag=false`."""
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localdapr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every app of a run template with its sidecar")
    add_up_arguments(up)
    up.set_defaults(func=run_up)
    from localdapr.doctor import add_doctor_arguments, run_doctor

    doctor = sub.add_parser("doctor", help="which servers a profile needs, and whether they answer")
    add_doctor_arguments(doctor)
    doctor.set_defaults(func=run_doctor)
    sc = sub.add_parser("sidecar", help="run one sidecar, flags as daprd")
    sc.add_argument("--app-id", required=True)
    sc.add_argument("--app-port", type=int, default=0)
    sc.add_argument("--app-protocol", default="http", help="http, or grpc for an app serving AppCallback")
    sc.add_argument("--enable-app-health-check", action="store_true", help="probe the app's health")
    sc.add_argument("--app-health-check-path", default="/healthz", help="HTTP apps' health endpoint")
    sc.add_argument("--app-health-probe-interval", type=int, default=5, help="seconds between probes")
    sc.add_argument("--app-health-probe-timeout", type=int, default=500, help="milliseconds per probe")
    sc.add_argument("--app-health-threshold", type=int, default=3, help="failed probes to be unhealthy")
    sc.add_argument("--dapr-http-port", type=int, default=3500)
    sc.add_argument("--dapr-grpc-port", type=int, default=50001)
    sc.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0: a free one)")
    sc.add_argument(
        "--enable-metrics",
        type=_flag,
        nargs="?",
        const=True,
        default=True,
        help="serve metrics (--enable-metrics=false: no metrics port, as daprd)",
    )
    sc.add_argument(
        "--resources-path",
        "--components-path",
        action="append",
        help="components folder (repeatable; default: ~/.dapr/components, as `dapr run`)",
    )
    sc.add_argument("--config")
    sc.add_argument("--registry", help="name-resolution folder shared by sidecars that call each other")
    sc.add_argument("--log-level", default="info")
    sc.set_defaults(func=run_sidecar)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
