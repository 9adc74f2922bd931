"""`vigil secrets init`: make components/secrets.json, the local secret store's file, from its template.

The file is not in the repository (issue 10: nothing secret is committed). Every `vigil` command, `python
-m localdapr up` and the test suite make it on first use; `dapr run -f .` (real daprd) does not, so run
`vigil secrets init` once before it. An existing file is never replaced. `vigil secrets keypair` prints a
fresh model-signing key pair for a Kubernetes Secret (README, Deploy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from localdapr.secretsfile import SecretsTemplateError, ed25519_pair, ensure_secrets_file, template_for

REPO: Final = Path(__file__).resolve().parents[1]
SECRETS_FILE: Final = REPO / "components" / "secrets.json"


def ensure_local_secrets() -> None:
    """First use of a fresh clone: create the file; say so once, on stderr (stdout may be piped)."""
    try:
        if ensure_secrets_file(SECRETS_FILE):
            sys.stderr.write(f"vigil: created {SECRETS_FILE} (new local secrets, mode 0600)\n")
    except (SecretsTemplateError, OSError) as exc:
        sys.stderr.write(f"vigil: could not create {SECRETS_FILE}: {exc}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="secrets_command", required=True)
    sub.add_parser(
        "init", help=f"create {SECRETS_FILE.relative_to(REPO)} from its template if it does not exist"
    )
    sub.add_parser(
        "keypair",
        help="print a new model-signing key pair as private-key=... and public-key=... lines "
        "(kubectl create secret generic ... --from-env-file)",
    )


def run_secrets(args: argparse.Namespace) -> int:
    if args.secrets_command == "keypair":
        pair = ed25519_pair()
        sys.stdout.write(f"private-key={pair['private-key']}\npublic-key={pair['public-key']}\n")
        return 0
    try:
        created = ensure_secrets_file(SECRETS_FILE)
    except (SecretsTemplateError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if created:
        sys.stdout.write(f"created {SECRETS_FILE} from {template_for(SECRETS_FILE).name} (mode 0600)\n")
    elif SECRETS_FILE.exists():
        sys.stdout.write(f"{SECRETS_FILE} exists: left as it is\n")
    else:
        sys.stderr.write(f"error: no template {template_for(SECRETS_FILE)}\n")
        return 1
    return 0
