"""Which device targets work in this process, and choosing one before MindSpore's runtime starts."""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("CPU", "GPU", "Ascend")


class DeviceError(RuntimeError):
    """A device cannot be selected (not available here, or the runtime already runs on another one)."""


@dataclass(frozen=True)
class Devices:
    """Device targets usable in this process and the one MindSpore uses now."""

    available: tuple[str, ...]
    current: str

    def __iter__(self):
        return iter(self.available)

    def __contains__(self, target: object) -> bool:
        return target in self.available


def _is_available(target: str) -> bool:
    from mindspore import device_context

    module = {"CPU": device_context.cpu, "GPU": device_context.gpu, "Ascend": device_context.ascend}[target]
    try:
        return bool(module.is_available())
    except Exception:  # a plugin that fails to load means "not here"
        return False


def available_devices() -> Devices:
    """Device targets that work here: CPU always; GPU/Ascend when their plugin loads and a device answers."""
    import mindspore

    available = tuple(t for t in TARGETS if t == "CPU" or _is_available(t))
    current = mindspore.get_current_device()
    if isinstance(current, tuple):
        current_target = current[0]
    else:
        current_target = getattr(current, "device_target", str(current))
    return Devices(available, str(current_target))


def select_device(target: str) -> str:
    """Make ``target`` the device for the next runs; must happen before MindSpore's runtime starts.

    Raises ``DeviceError`` when the target is not available here, or when the runtime already started on a
    different device (MindSpore cannot switch within a process: restart the kernel).
    """
    import mindspore

    devices = available_devices()
    if target not in TARGETS:
        raise DeviceError(f"unknown device target {target!r}: expected one of {', '.join(TARGETS)}")
    if target not in devices:
        raise DeviceError(f"device {target} is not available in this process (only {', '.join(devices)})")
    if target == devices.current:
        return target
    try:
        mindspore.set_device(target)
    except RuntimeError as error:
        if "initialized" in str(error).lower():
            raise DeviceError(
                f"MindSpore's runtime already runs on {devices.current} in this process and cannot switch to "
                f"{target}: restart the kernel and select {target} before the first run"
            ) from None
        raise DeviceError(f"cannot select {target}: {error}") from error
    return target
