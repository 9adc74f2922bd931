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

from apps.common.contracts import DATASETS
from apps.common.names import TRAINING_APP_ID
from apps.common.profiles import UnknownProfile, get_profile
from vigil.sidecar import SidecarStartError, command_sidecar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resources",
        type=Path,
        default=None,
        help="components folder (default: components/embedded; components/ = Redis profile)",
    )
    parser.add_argument(
        "--profile",
        default="turbofan",
        help="equipment profile to train for; its model kind says what is trained: turbofan (rul: "
        "remaining useful life), milling (failure: calibrated failure probability per reading), "
        "turbofan-anomaly (anomaly: no labels, healthy early life, threshold at a false-alarm rate)",
    )
    parser.add_argument(
        "--n-estimators",
        type=int,
        default=None,
        help="trees: LightGBM boosting rounds for rul (500), gradient boosting for failure (150), "
        "isolation forest for anomaly (100)",
    )
    parser.add_argument(
        "--source",
        choices=("dataset", "archive"),
        default="dataset",
        help="dataset: a shipped data set (default); archive: the fleet's history (runs to failure "
        "for rul, lives and their failure events for failure, every life's early readings for anomaly)",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="with --source dataset: FD001 (default for turbofan profiles) or FD002 (C-MAPSS), "
        "AI4I2020 (default for milling)",
    )
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
                trees = {} if args.n_estimators is None else {"n_estimators": args.n_estimators}
                service = TrainingService(
                    DaprModelRegistry(client, signer=await load_signer(client, configured)),
                    DaprPublisher(client),
                    profile,
                    trees if profile.model_kind == "rul" else {},
                    archive=DaprArchive(client),
                    kind_params={profile.model_kind: trees},
                )
                fields = {"dataset": args.dataset} if args.source == "dataset" and args.dataset else {}
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
