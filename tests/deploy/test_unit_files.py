"""The two units as files: one static user for both (they share the state directory), and Jetson's
integrated GPU (nvgpu driver) both starts the engine build and is reachable from both sandboxes."""

from __future__ import annotations

from gateway.resources import REPO_DIR

UNITS = REPO_DIR / "systemd"


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_one_static_user_for_both_units() -> None:
    gateway, engines = _settings("medshield.service"), _settings("medshield-build-engines.service")
    for unit in (gateway, engines):
        assert unit["User"] == ["medshield"] and unit["Group"] == ["medshield"]
        assert "DynamicUser" not in unit and unit["StateDirectory"] == ["medshield"]
    sysusers = (REPO_DIR / "deploy" / "host" / "sysusers.conf").read_text()
    assert "u medshield " in sysusers and "m medshield video" in sysusers


def test_the_engine_build_runs_on_a_jetson_igpu() -> None:
    conditions = _settings("medshield-build-engines.service")["ConditionPathExists"]
    # "|" makes them alternatives: any one present is enough.
    assert {"|/dev/nvidiactl", "|/dev/nvhost-ctrl-gpu", "|/dev/nvgpu"} <= set(conditions)


def test_both_sandboxes_allow_the_tegra_device_nodes() -> None:
    for unit in ("medshield.service", "medshield-build-engines.service"):
        allowed = {entry.split()[0] for entry in _settings(unit)["DeviceAllow"]}
        assert {"char-nvhost*", "char-nvgpu*", "char-nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvmap"} <= allowed, unit
        assert {"char-nvidiactl", "char-nvidia-uvm"} <= allowed, unit
