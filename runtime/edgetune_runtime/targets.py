"""CPU targets: the classes of CPU that run a bundle's int8 kernels differently, and which one this is.

ONNX Runtime picks its int8 matrix kernels by instruction set: VNNI dot products on AVX-512 VNNI x86,
plain AVX2 multiply-adds without VNNI (where u8 x s8 products can saturate), and NEON/dot-product on
ARM64. A bundle whose golden examples pass on one class is not proven on another, so bundles record
the targets they were verified on (`verified_targets` in the manifest) and `verify` names a CPU
outside them.
"""

from __future__ import annotations

TARGETS = ("avx512-vnni", "avx2", "arm64")
"""The targets `edgetune quantize --target` and scripts/emulate.sh know, fastest int8 x86 path first."""


def cpu_target(machine: dict) -> str:
    """The target class of a machine as `describe_machine()` describes it; `other` for none of TARGETS."""
    architecture = str(machine.get("architecture", "")).lower()
    flags = set(machine.get("isa_flags", ()))
    if architecture in ("aarch64", "arm64"):
        return "arm64"
    if architecture in ("x86_64", "amd64"):
        if "avx512_vnni" in flags:
            return "avx512-vnni"
        if "avx2" in flags:
            return "avx2"
    return "other"


def unverified_target_warning(manifest: dict, machine: dict) -> str | None:
    """One line when this machine's target is not among the bundle's verified targets, else None.

    Bundles from before targets were recorded carry none: nothing is said about them.
    """
    verified = manifest.get("verified_targets")
    if not verified:
        return None
    target = cpu_target(machine)
    if target in verified:
        return None
    return (f"warning: this CPU is {target} ({machine.get('cpu_model', 'unknown model')}); the bundle was verified on "
            f"{', '.join(verified)} only. Its int8 kernels differ here: trust it after its golden examples pass and "
            "its accuracy is measured here (`edgetune-runtime bench`, or scripts/emulate.sh on a build machine)")
