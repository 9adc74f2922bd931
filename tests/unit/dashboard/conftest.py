"""A NiceGUI user simulation of the dashboard's pages over the in-memory backend.

`user_simulation` (nicegui.testing, what its `user` fixture uses) resets NiceGUI's globals and runs
its app in this process without a browser; the pages are registered inside it. NiceGUI forgets the
modules of registered page functions on exit (to re-import a main file next time); the `apps`
modules are put back, so other tests keep one copy of them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from apps.dashboard.pages import register_pages
from apps.dashboard.service import DashboardService
from apps.dashboard.settings import DashboardSettings
from tests.unit.dashboard.fakes import FakeBackend


@dataclass
class Dashboard:
    user: User
    service: DashboardService
    backend: FakeBackend


@pytest.fixture
async def dashboard() -> AsyncIterator[Dashboard]:
    backend = FakeBackend()
    service = DashboardService(DashboardSettings(push_interval_seconds=0.02), backend_=backend)
    saved = {
        name: module for name, module in sys.modules.items() if name == "apps" or name.startswith("apps.")
    }
    try:
        async with user_simulation() as user:
            register_pages(service)
            yield Dashboard(user, service, backend)
    finally:
        sys.modules.update(saved)
