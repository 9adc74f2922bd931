"""`vigil`: one command for everything an operator or developer runs.

vigil up [-f dapr.yaml] [--resources DIR]   start every app with a localdapr sidecar
vigil up --profile postgres-rabbitmq         the same with the component profile components/<NAME>
vigil doctor [--profile NAME]               which servers a profile needs, and whether they answer
vigil demo [--fresh]                        the whole platform, a model, and engines streaming into it
vigil reset [--yes]                         delete the embedded profile's state (.localdapr/): start over
vigil alerts [--open]                       the alerts, newest first; vigil alerts ack ID [--note TEXT]
vigil train                                 train a model now and register it
vigil models list|show NAME                 the model registry: versions, gate decisions, drift
vigil models promote NAME N | rollback NAME  change the champion (kept in its history)
vigil replay [--units 1-5] [--speed 10]     stream C-MAPSS FD001 units into ingestion as a live fleet
vigil simulate --machines N [--seed S]      a larger fleet made from the real trajectories, for load
vigil import cmapss|csv|ai4i FILE           historical run-to-failure data into the reading archive
vigil keys create --name N --scope read     an API key for the gateway, printed once (list, revoke)
vigil token APP                             the app token of APP in this run of vigil up (dapr-api-token)
vigil secrets init                          make components/secrets.json (any vigil command does if missing)
"""

from __future__ import annotations

import argparse

from localdapr import doctor as localdapr_doctor
from localdapr.launch import cli as localdapr_cli
from vigil import alerts as alerts_cli
from vigil import demo as tools_demo
from vigil import importing as import_cli
from vigil import keys as gateway_cli
from vigil import localsecrets as secrets_cli
from vigil import models as models_cli
from vigil import replay as tools_cli
from vigil import reset
from vigil import token as token_cli
from vigil import train as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = [
        ("up", "start every app of a run template with its localdapr sidecar", localdapr_cli.add_up_arguments,
         localdapr_cli.run_up),
        ("doctor", "which servers a component profile needs, and whether they answer",
         localdapr_doctor.add_doctor_arguments, localdapr_doctor.run_doctor),
        ("demo", "the platform demo (Ctrl-C stops it)", tools_demo.add_arguments, tools_demo.run_demo),
        ("reset", "delete the embedded profile's state (.localdapr/), asking first", reset.add_arguments,
         reset.run_reset),
        ("alerts", "list alerts (--open: active ones), or acknowledge one: alerts ack ID --note TEXT",
         alerts_cli.add_arguments, alerts_cli.run_alerts),
        ("train", "train a model and register it", training_cli.add_arguments, training_cli.run_train),
        ("models", "the model registry: list, show, promote, rollback", models_cli.add_arguments,
         models_cli.run_models),
        ("replay", "stream FD001 units into ingestion", tools_cli.add_replay_arguments, tools_cli.run_replay),
        ("simulate", "stream a simulated fleet into ingestion", tools_cli.add_simulate_arguments,
         tools_cli.run_simulate),
        ("import", "load historical run-to-failure data into the reading archive", import_cli.add_arguments,
         import_cli.run_import),
        ("keys", "the gateway's API keys: create (printed once), list, revoke", gateway_cli.add_arguments,
         gateway_cli.run_keys),
        ("token", "print the app token vigil up gave an app in this run", token_cli.add_arguments,
         token_cli.run_token),
        ("secrets", "the local secret store's file: init (create it), keypair (for a cluster)",
         secrets_cli.add_arguments, secrets_cli.run_secrets),
    ]  # fmt: skip
    for name, help_text, add_arguments, run in commands:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "secrets":
        # A fresh clone has no components/secrets.json (it is not committed): make it before any
        # command starts a sidecar on the component folders that read it.
        secrets_cli.ensure_local_secrets()
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
