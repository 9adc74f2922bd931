"""`vigil token APP`: the app token `vigil up` gave an app in this run, to call the app as its sidecar does.

Apps started by `vigil up` answer 401 to anyone without their app token (issue 10: only the app's own
sidecar may call it); a developer calling one directly adds `-H "dapr-api-token: $(vigil token APP)"`.
The tokens are new for each run and readable only by the user who started it (.localdapr/registry/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apps.common.names import ALL_APP_IDS
from vigil.replay import REPO, app_token_headers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app_id", choices=ALL_APP_IDS, metavar="APP", help=f"one of {', '.join(ALL_APP_IDS)}")
    parser.add_argument(
        "-f", "--file", type=Path, default=REPO / "dapr.yaml", help="run template (dapr.yaml)"
    )


def run_token(args: argparse.Namespace) -> int:
    headers = app_token_headers(args.app_id, args.file)
    if not headers:
        sys.stderr.write(f"error: no app token for {args.app_id}: is `vigil up` running with {args.file}?\n")
        return 1
    sys.stdout.write(headers["dapr-api-token"] + "\n")
    return 0
