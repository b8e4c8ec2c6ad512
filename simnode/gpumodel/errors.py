"""Errors of the domain model.

Every refusal of the MIG rules is a :class:`PlacementError` that names the GPU,
the profile and the reason in one sentence a user can act on, for example
``GPU 3: 3g.20gb needs memory slices 4-7; slice 6 is held by 1g.5gb (GI 13)``.
Callers catch the family they care about (a bad profile string, a bad config
file, a refused placement) rather than parsing messages.
"""

from __future__ import annotations


class GpuModelError(Exception):
    """Base of every error the domain model raises."""


class ProfileParseError(GpuModelError, ValueError):
    """A MIG profile string such as ``3g.20gb`` is malformed."""


class UnknownProfileError(GpuModelError, KeyError):
    """A well-formed profile that the GPU's profile table does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MigConfigError(GpuModelError, ValueError):
    """A mig-parted config file is malformed or names something that does not exist."""


class PlacementError(GpuModelError):
    """A GPU or compute instance cannot be created as asked.

    ``gpu`` is the GPU index, ``profile`` the profile asked for and ``reason``
    the rest of the sentence; ``str()`` gives the whole sentence.
    """

    def __init__(self, gpu: int, profile: str, reason: str) -> None:
        super().__init__(f"GPU {gpu}: {reason}")
        self.gpu = gpu
        self.profile = profile
        self.reason = reason


class SliceConflictError(PlacementError):
    """The asked placement overlaps an existing GPU instance."""


class InvalidPlacementError(PlacementError):
    """The profile cannot start at the asked memory slice on this GPU."""


class NoFreePlacementError(PlacementError):
    """The driver found no free placement for the profile (NVML: Insufficient Resources)."""


class ProfileLimitError(PlacementError):
    """The GPU already holds the most instances of this profile it can."""
