"""`vigil train`: train a model now and register it, through a localdapr sidecar of app id `training`.

The registry is whatever `modelstore` the chosen components folder defines (the embedded profile's
SQLite file by default), so a running `vigil up` picks the new champion up (inference watches the
champion pointer, and the `model-updates` topic when the broker is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from apps.common.names import TRAINING_APP_ID
from apps.common.profiles import UnknownProfile, get_profile
from apps.training.jobs import DATASETS
from vigil.sidecar import SidecarStartError, command_sidecar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resources",
        type=Path,
        default=None,
        help="components folder (default: components/embedded; components/ = Redis profile)",
    )
    parser.add_argument("--profile", default="turbofan", help="equipment profile to train for")
    parser.add_argument("--n-estimators", type=int, default=500, help="LightGBM boosting rounds")
    parser.add_argument(
        "--source",
        choices=("dataset", "archive"),
        default="dataset",
        help="dataset: a C-MAPSS training file (default); archive: the fleet's runs to failure",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="FD001", help="with --source dataset (FD001)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote even if the gate finds the champion better (and train without new labelled runs)",
    )


class ProgressBar:
    """One line on stderr, redrawn in place: training takes tens of seconds."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, stage: str, fraction: float) -> None:
        width = 30
        done = int(width * fraction)
        sys.stderr.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {fraction:5.1%} {stage:<40.40} "
            f"{time.monotonic() - self.start:5.1f}s"
        )
        sys.stderr.flush()
        if fraction >= 1.0:
            sys.stderr.write("\n")


async def _train(args: argparse.Namespace) -> int:
    from dapr.aio.clients import DaprClient

    from apps.common.archivestore import DaprArchive
    from apps.common.publisher import DaprPublisher
    from apps.common.registry import DaprModelRegistry
    from apps.common.signing import load_signer
    from apps.training.jobs import TrainingJob, TrainRequest
    from apps.training.service import TrainingService

    try:
        profile = get_profile(args.profile)
    except UnknownProfile as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        with command_sidecar(TRAINING_APP_ID, args.resources, "train"):
            async with DaprClient() as client:
                # Signed as the training app signs (VIGIL_TRAINING_SIGNING_KEY, or the modelsigning
                # store): inference serves only what verifies.
                configured = os.environ.get("VIGIL_TRAINING_SIGNING_KEY") or None
                service = TrainingService(
                    DaprModelRegistry(client, signer=await load_signer(client, configured)),
                    DaprPublisher(client),
                    profile,
                    {"n_estimators": args.n_estimators},
                    archive=DaprArchive(client),
                )
                fields = {"dataset": args.dataset} if args.source == "dataset" else {}
                request = TrainRequest(profile=profile.name, source=args.source, force=args.force, **fields)
                job = await service.run(TrainingJob(trigger="cli", request=request), progress=ProgressBar())
    except SidecarStartError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if job.status == "no_new_data":
        sys.stdout.write(f"nothing trained: {job.message}\n")
        return 0
    if job.status != "succeeded" or job.card is None:
        sys.stderr.write(f"training failed: {job.error}\n")
        return 1
    card = job.card
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in card.metrics.items())
    sys.stdout.write(
        f"registered {card.name} v{card.version} ({metrics}; "
        f"ONNX max abs diff {card.onnx_max_abs_diff:.2e})\n"
        f"{'promoted to champion' if job.promoted else 'not promoted'}: "
        f"{job.gate.reason if job.gate is not None else ''}\n"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    return asyncio.run(_train(args))
