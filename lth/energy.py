"""Energy and CO2-equivalent of each round, with codecarbon in its offline mode (no network).

codecarbon measures through RAPL (CPU) and NVML (GPU) where the machine exposes them and otherwise estimates
(CPU load x the processor's TDP; RAM by its size); `energy_method` says which. CO2e is the energy times a grid
carbon intensity: codecarbon's figure for --carbon_region (an ISO 3166 alpha-3 country code), else
--carbon_intensity, else the world average below; `carbon_source` says which.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # lth.settings reads carbon_region from here
    from lth.settings import ReportingSettings

WORLD_AVERAGE_G_PER_KWH = 475.0  # IEA world average of electricity generation (2019), as carbontracker's default
MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics"}
ENERGY_COLUMNS = ("energy_kwh", "co2_kg", "energy_method", "carbon_intensity_g_per_kwh", "carbon_source")


REGIONS_FILE = "data/private_infra/global_energy_mix.json"  # inside the codecarbon package


def carbon_region(text: str) -> str:
    """--carbon_region: a country codecarbon has a grid carbon intensity for (its ISO 3166 alpha-3 codes), refused
    before training otherwise (codecarbon would fall back to the world average with an error mid-run)."""
    import argparse
    import importlib.resources
    import json

    code = text.strip().upper()
    try:
        known = json.loads((importlib.resources.files("codecarbon") / REGIONS_FILE).read_text())
    except (ImportError, OSError, ValueError):
        return code  # no codecarbon: no energy is measured, so no region is used
    if code not in known:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a region codecarbon knows: expected an ISO 3166 alpha-3 country code from "
            f"codecarbon's {REGIONS_FILE} (e.g. DNK, FRA, USA; {len(known)} there)"
        )
    return code


@dataclass
class Reading:
    energy_kwh: float
    co2_kg: float

    def add(self, lap: Reading, share: float = 1.0) -> Reading:
        """Add `share` of a lap (runs trained together share its energy evenly)."""
        self.energy_kwh += lap.energy_kwh * share
        self.co2_kg += lap.co2_kg * share
        return self


class EnergyMeter:
    """Laps of energy use for one process (codecarbon's hardware set-up, about 2 s, happens once per process)."""

    _tracker = None
    _tracker_pid = None

    def __init__(self, enabled: bool = True, region: str | None = None, intensity: float | None = None):
        self.enabled = enabled
        self.region = region
        self.intensity = intensity
        self.method = "off" if not enabled else ""
        self.available = False
        if enabled:
            self.available = self._tracker_for_process() is not None
            if not self.available:
                self.method = "unavailable (codecarbon not installed)"

    def _tracker_for_process(self):
        # A forked child must not reuse its parent's tracker (its sampling thread did not survive the fork).
        if EnergyMeter._tracker is None or EnergyMeter._tracker_pid != os.getpid():
            try:
                from codecarbon import OfflineEmissionsTracker
            except ImportError:
                return None
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            EnergyMeter._tracker = OfflineEmissionsTracker(
                country_iso_code=self.region or "USA",
                save_to_file=False,
                log_level="error",
                tracking_mode="process",
            )
            EnergyMeter._tracker_pid = os.getpid()
        return EnergyMeter._tracker

    def start(self) -> None:
        if self.available:
            self._tracker_for_process().start_task("round")

    def lap(self) -> Reading:
        """Energy and CO2e since start() or the previous lap; measuring goes on."""
        if not self.available:
            return Reading(0.0, 0.0)
        tracker = self._tracker_for_process()
        data = tracker.stop_task()
        tracker.start_task("round")
        if not self.method:
            self.method = self._describe(tracker)
        energy = float(data.energy_consumed or 0.0)
        if self.region and self.intensity is None:
            return Reading(energy, float(data.emissions or 0.0))
        return Reading(energy, energy * self.intensity_g_per_kwh() / 1000.0)

    def stop(self) -> Reading:
        reading = self.lap()
        if self.available:
            self._tracker_for_process().stop_task()
        return reading

    def intensity_g_per_kwh(self) -> float:
        return self.intensity if self.intensity is not None else WORLD_AVERAGE_G_PER_KWH

    def carbon_source(self) -> str:
        if self.intensity is not None:
            return "--carbon_intensity"
        if self.region:
            return f"codecarbon {self.region}"
        return "world average (IEA 2019)"

    @staticmethod
    def _describe(tracker) -> str:
        parts, measured = [], True
        for hardware in getattr(tracker, "_hardware", []):
            kind = type(hardware).__name__
            mode = getattr(hardware, "_mode", None)
            if kind == "CPU":
                ok = mode in MEASURED_CPU_MODES
                parts.append(f"CPU {'measured (' + mode + ')' if ok else 'estimated (load x TDP)'}")
                measured &= ok
            elif kind == "GPU":
                parts.append("GPU measured (NVML)")
            elif kind == "RAM":
                parts.append("RAM estimated (by size)")
        return ("measured" if measured else "estimated") + ": " + ", ".join(parts)

    def columns(self, total: Reading) -> dict:
        """The rounds.csv columns of a round that used `total`."""
        if not self.enabled or not self.available:
            return {"energy_kwh": "", "co2_kg": "", "energy_method": self.method, "carbon_intensity_g_per_kwh": "",
                    "carbon_source": ""}  # fmt: skip
        intensity = 1000.0 * total.co2_kg / total.energy_kwh if total.energy_kwh else self.intensity_g_per_kwh()
        return {
            "energy_kwh": total.energy_kwh,
            "co2_kg": total.co2_kg,
            "energy_method": self.method,
            "carbon_intensity_g_per_kwh": intensity,
            "carbon_source": self.carbon_source(),
        }


def meter_for(settings: ReportingSettings) -> EnergyMeter:
    """The meter a run's settings ask for ($LTH_ENERGY=off: off)."""
    return EnergyMeter(
        enabled=settings.energy and os.environ.get("LTH_ENERGY", "on") != "off",
        region=settings.carbon_region,
        intensity=settings.carbon_intensity,
    )
