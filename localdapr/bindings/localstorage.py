"""bindings.localstorage: files under `rootPath`, operations create, get, list and delete.

Behaviour follows components-contrib's binding:
- `fileName` metadata names the file, relative to rootPath (a leading "/" is still relative); create
  without one uses a random UUID and answers {"fileName": "<relative path>"};
- create first un-quotes the data if it is a Go string literal (the HTTP API sends a JSON string
  with its quotes), then base64-decodes it if it is valid padded base64 (that is how binary files
  are sent; it also means a text such as "abcd" is stored decoded, as daprd does);
- get answers the bytes as stored; list answers the absolute paths of the files below rootPath (or
  below the `fileName` directory), or `null` when there are none; delete answers nothing (HTTP 204);
- rootPath may not be in /proc, /sys, /boot or /var/run/secrets and is created if missing.

One difference, on purpose: a fileName that climbs above rootPath ("../x") or leads out of it through
a symlink is refused with an error. daprd's securejoin silently confines such a name to rootPath
(writing rootPath/x); refusing it makes the mistake visible instead of writing somewhere unexpected.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import uuid
from pathlib import Path

from localdapr.bindings.base import BindingError, InvokeRequest, InvokeResponse, OutputBinding
from localdapr.bindings.gocompat import decode_base64, marshal_json, path_error, unquote
from localdapr.components.spec import ComponentSpec

_DISALLOWED_ROOTS = ("/proc", "/sys", "/boot", "/var/run/secrets")


class LocalStorageBinding(OutputBinding):
    operations = ("create", "get", "list", "delete")

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> LocalStorageBinding:
        raw = spec.metadata.get("rootPath", "")
        if not raw:
            raise spec.fail("property rootPath must not be empty (metadata field 'rootPath')")
        path = Path(os.path.normpath(raw))
        if not path.is_absolute():
            path = Path.cwd() / path
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise spec.fail(f"property rootPath represents a file and not a directory: {existing}")
        root = path.resolve()  # symlinks in the existing part, as daprd resolves them
        if any(root == Path(p) or root.is_relative_to(p) for p in _DISALLOWED_ROOTS):
            raise spec.fail(f"property rootPath points to a disallowed location: {root}")
        return cls(root)

    async def init(self) -> None:
        try:
            self.root.mkdir(mode=0o777, parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"unable to create directory specified by 'rootPath' {self.root}: {exc}") from exc

    async def invoke(self, request: InvokeRequest) -> InvokeResponse | None:
        filename = request.metadata.get("fileName", "")
        if not filename and request.operation == "create":
            filename = str(uuid.uuid4())
        path, relative = self._resolve(filename)
        match request.operation:
            case "create":
                return await asyncio.to_thread(self._create, path, relative, request.data)
            case "get":
                return await asyncio.to_thread(self._get, path)
            case "list":
                return await asyncio.to_thread(self._list, path)
            case _:  # delete: the runtime lets through only the operations listed above
                await asyncio.to_thread(self._delete, path)
                return None

    def _resolve(self, filename: str) -> tuple[Path, str]:
        parts: list[str] = []
        for part in filename.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise BindingError(f"error getting absolute path for file {filename}: escapes rootPath")
                parts.pop()
            else:
                parts.append(part)
        path = self.root.joinpath(*parts)
        real = Path(os.path.realpath(path))
        if real != self.root and not real.is_relative_to(self.root):
            raise BindingError(
                f"error getting absolute path for file {filename}: a symlink leads out of rootPath"
            )
        return path, "/".join(parts) or "."

    def _create(self, path: Path, relative: str, data: bytes) -> InvokeResponse:
        unquoted = unquote(data)
        if unquoted is not None:
            data = unquoted
        decoded = decode_base64(data)
        if decoded is not None:
            data = decoded
        try:
            path.parent.mkdir(mode=0o777, parents=True, exist_ok=True)
        except OSError as exc:
            raise BindingError(
                f"error creating directory {path.parent}: {path_error('mkdir', str(path.parent), exc)}"
            ) from exc
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise BindingError(f"error creating file {path}: {path_error('open', str(path), exc)}") from exc
        return InvokeResponse(data=marshal_json({"fileName": relative}))

    def _get(self, path: Path) -> InvokeResponse:
        if path.is_dir():  # Go opens a directory and then fails to read it
            raise BindingError(f"error reading file {path}: read {path}: is a directory")
        try:
            return InvokeResponse(data=path.read_bytes())
        except FileNotFoundError as exc:
            raise BindingError(f"file not found: {path}") from exc
        except OSError as exc:
            raise BindingError(f"error opening path {path}: {path_error('open', str(path), exc)}") from exc

    def _list(self, path: Path) -> InvokeResponse:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise BindingError(
                f"error getting stats for path {path}: {path_error('stat', str(path), exc)}"
            ) from exc
        if not stat.S_ISDIR(mode):
            raise BindingError(f"unable to list files as the file specified is not a directory: {path}")
        files = _walk(path)
        return InvokeResponse(data=marshal_json(files or None))

    def _delete(self, path: Path) -> None:
        # Go's os.Remove: unlink, else rmdir (so an empty directory goes too); report the apt error.
        try:
            os.unlink(path)
        except OSError as unlink_error:
            try:
                os.rmdir(path)
            except OSError as rmdir_error:
                exc = rmdir_error if rmdir_error.errno != errno.ENOTDIR else unlink_error
                raise BindingError(
                    f"error deleting file {path}: {path_error('remove', str(path), exc)}"
                ) from exc


def _walk(directory: Path) -> list[str]:
    """filepath.Walk order: names sorted, depth first, files only (a symlink is not followed)."""
    files: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return files
    for name in names:
        child = directory / name
        if child.is_dir() and not child.is_symlink():
            files += _walk(child)
        else:
            files.append(str(child))
    return files
