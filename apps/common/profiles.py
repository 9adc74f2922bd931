"""Equipment profiles: what a kind of machine reports and how Vigil judges it.

A profile is the single place that says which channels a machine sends (and what values are physically
plausible), which of them feed the model, how long the rolling window is, which model serves it and
when an alert opens or clears. Ingestion validates against it, the EquipmentActor windows and alerts
with it, and training builds features with it, so all three agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


class UnknownProfile(KeyError):
    """Raised when a reading or a caller names a profile Vigil does not ship."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown equipment profile {self.name!r}; known profiles: {', '.join(self.known)}"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Hysteresis thresholds on predicted remaining useful life (RUL, in cycles).

    An alert opens after `consecutive` predictions at or below a threshold and clears only after
    `consecutive` predictions above `warning_rul + clear_margin`, so noise around a threshold
    cannot make an alert flap.
    """

    warning_rul: float = 50.0
    critical_rul: float = 20.0
    consecutive: int = 3
    clear_margin: float = 10.0

    def __post_init__(self) -> None:
        if not self.critical_rul < self.warning_rul:
            raise ValueError("critical_rul must be below warning_rul")
        if self.consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if self.clear_margin < 0:
            raise ValueError("clear_margin must be >= 0")

    @property
    def clear_rul(self) -> float:
        """RUL a prediction must exceed to count towards clearing an open alert."""
        return self.warning_rul + self.clear_margin


@dataclass(frozen=True, slots=True)
class EquipmentProfile:
    """Schema and judgement rules for one kind of equipment.

    `channels` maps every channel name the machine may report (operating settings and sensors) to
    its plausible (min, max) range; a value outside it is a broken sensor or a unit mix-up, not a
    degradation signal, so ingestion rejects it. `informative_sensors` are the channels the feature
    pipeline uses, in the column order of every window and trajectory array.
    """

    name: str
    channels: Mapping[str, tuple[float, float]] = field(hash=False)  # a mapping is unhashable
    informative_sensors: tuple[str, ...]
    operating_settings: tuple[str, ...]
    model_name: str
    window: int = 30
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    silence_after_seconds: float = 300.0
    # Predictions owed (inference unreachable) for this long raise a `stale` alert of their own.
    stale_after_seconds: float = 120.0

    def __post_init__(self) -> None:
        # Freeze the mapping so a shared module-level profile cannot be mutated by one caller.
        object.__setattr__(self, "channels", MappingProxyType(dict(self.channels)))
        for channel, (lo, hi) in self.channels.items():
            if not lo < hi:
                raise ValueError(f"channel {channel!r}: range min must be below max")
        missing = [s for s in (*self.informative_sensors, *self.operating_settings) if s not in self.channels]
        if missing:
            raise ValueError(f"profile {self.name!r} references undeclared channels: {missing}")
        if len(set(self.informative_sensors)) != len(self.informative_sensors):
            raise ValueError("informative_sensors must be unique")
        if self.window < 2:
            raise ValueError("window must be >= 2 (a slope needs two points)")
        if self.silence_after_seconds <= 0:
            raise ValueError("silence_after_seconds must be > 0")
        if self.stale_after_seconds <= 0:
            raise ValueError("stale_after_seconds must be > 0")

    @property
    def required_channels(self) -> tuple[str, ...]:
        """Channels every reading must carry: the ones the model cannot do without."""
        return self.informative_sensors

    def row_from_values(self, values: Mapping[str, float]) -> np.ndarray:
        """One window row (informative sensors, profile order) from a reading's `values`."""
        return np.array([values[name] for name in self.informative_sensors], dtype=np.float64)


def _ranges(**ranges: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return dict(ranges)


# C-MAPSS channel names, exactly as the dataset columns are numbered (3 settings, 21 sensors).
# Ranges are generous envelopes around FD001's observed min/max (train and test): wide enough for
# other sea-level engines and sensor noise, narrow enough to catch unit errors (e.g. Kelvin vs
# Rankine) and stuck-at-zero sensors. The comment names the physical quantity (Saxena et al. 2008).
CMAPSS_CHANNEL_RANGES: dict[str, tuple[float, float]] = _ranges(
    op_setting_1=(-1.0, 1.0),  # altitude setting, FD001 about +-0.009
    op_setting_2=(-1.0, 1.0),  # Mach setting, FD001 about +-0.0007
    op_setting_3=(0.0, 110.0),  # throttle resolver angle, FD001 100
    sensor_1=(400.0, 600.0),  # T2 fan inlet temperature (degR), FD001 518.67
    sensor_2=(600.0, 700.0),  # T24 LPC outlet temperature, FD001 641.1-644.5
    sensor_3=(1450.0, 1750.0),  # T30 HPC outlet temperature, FD001 1569-1617
    sensor_4=(1250.0, 1600.0),  # T50 LPT outlet temperature, FD001 1382-1441
    sensor_5=(10.0, 20.0),  # P2 fan inlet pressure (psia), FD001 14.62
    sensor_6=(15.0, 30.0),  # P15 bypass-duct pressure, FD001 21.6
    sensor_7=(500.0, 600.0),  # P30 HPC outlet pressure, FD001 549.9-556.1
    sensor_8=(2300.0, 2500.0),  # Nf physical fan speed (rpm), FD001 2387.9-2388.6
    sensor_9=(8500.0, 9800.0),  # Nc physical core speed, FD001 9021-9245
    sensor_10=(0.8, 2.0),  # epr engine pressure ratio, FD001 1.3
    sensor_11=(40.0, 55.0),  # Ps30 HPC outlet static pressure, FD001 46.8-48.5
    sensor_12=(480.0, 560.0),  # phi fuel flow / Ps30, FD001 518.7-523.8
    sensor_13=(2300.0, 2500.0),  # NRf corrected fan speed, FD001 2387.9-2388.6
    sensor_14=(7700.0, 8700.0),  # NRc corrected core speed, FD001 8100-8294
    sensor_15=(7.5, 9.5),  # BPR bypass ratio, FD001 8.32-8.58
    sensor_16=(0.0, 0.1),  # farB burner fuel-air ratio, FD001 0.03
    sensor_17=(350.0, 450.0),  # htBleed bleed enthalpy, FD001 388-400
    sensor_18=(2300.0, 2500.0),  # Nf_dmd demanded fan speed, FD001 2388
    sensor_19=(80.0, 120.0),  # PCNfR_dmd demanded corrected fan speed, FD001 100
    sensor_20=(30.0, 48.0),  # W31 HPT coolant bleed, FD001 38.1-39.4
    sensor_21=(18.0, 29.0),  # W32 LPT coolant bleed, FD001 22.9-23.6
)

# The 14 sensors that actually move in FD001; the other 7 are constant (or nearly so) and carry no
# degradation signal, so windowing them would only add noise features.
TURBOFAN_INFORMATIVE: tuple[str, ...] = tuple(
    f"sensor_{i}" for i in (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)
)

TURBOFAN = EquipmentProfile(
    name="turbofan",
    channels=CMAPSS_CHANNEL_RANGES,
    informative_sensors=TURBOFAN_INFORMATIVE,
    operating_settings=("op_setting_1", "op_setting_2", "op_setting_3"),
    model_name="turbofan-rul",
    window=30,
    thresholds=AlertThresholds(warning_rul=50.0, critical_rul=20.0, consecutive=3, clear_margin=10.0),
    silence_after_seconds=300.0,
)

PROFILES: Mapping[str, EquipmentProfile] = MappingProxyType({TURBOFAN.name: TURBOFAN})


def get_profile(name: str, profiles: Mapping[str, EquipmentProfile] = PROFILES) -> EquipmentProfile:
    """Look a profile up by name, failing with a message that lists the known ones."""
    try:
        return profiles[name]
    except KeyError:
        raise UnknownProfile(name, tuple(sorted(profiles))) from None
