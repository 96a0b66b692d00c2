"""Face detection and the official crop rule, on real public-domain portraits."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from float_model.crop_box import CropBox
from float_model.face import FaceBox, NoFaceError, YuNetDetector, as_rgb, centre_box, crop_box, crop_portrait, cut_crop, select_face
from float_model.media import load_image

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


@pytest.fixture(scope="module")
def hopper():
    return load_image(ASSETS / "grace_hopper.jpg")


@pytest.fixture(scope="module")
def astronaut():
    return load_image(ASSETS / "astronaut.jpg")


def test_crop_box_follows_the_official_rule():
    # box 100..300 x 50..290: half sides int(200/2) = 100 and int(240/2) = 120, centre (200, 170)
    box = crop_box(FaceBox(100.7, 50.2, 300.9, 290.6, 0.99), 640, 480)
    assert box == CropBox(200 - 192, 170 - 192, 384, 640, 480)  # half = int(120 * 1.6) = 192
    assert box.scale() == 512 / 384 and (box.right, box.bottom) == (200 + 192, 170 + 192)


@pytest.mark.parametrize("name", ["hopper", "astronaut"])
def test_real_portraits_are_cropped_around_the_face(request, detector, name):
    image = request.getfixturevalue(name)
    crop, box = crop_portrait(image, detector=detector)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    assert 0 < box.size < 2 * max(image.shape)
    # the crop is framed as FLOAT expects: face centred, about 1 / 1.6 of the side high
    face = detector(crop)[0]
    assert abs((face.x1 + face.x2) / 2 - 256) < 30 and abs((face.y1 + face.y2) / 2 - 256) < 40
    assert 0.45 < (face.y2 - face.y1) / 512 < 0.8


def test_two_faces_pick_as_asked(detector, hopper, astronaut):
    both = np.concatenate([astronaut, hopper[:512]], axis=1)  # astronaut left, Hopper (the larger face) right
    faces = detector(both)
    assert len(faces) == 2
    left = select_face(faces, "left-to-right", 0)
    right = select_face(faces, "left-to-right", 1)
    assert left.x2 < 512 <= right.x1
    assert select_face(faces, "largest") == right
    with pytest.raises(ValueError, match="2 face"):
        select_face(faces, "left-to-right", 2)
    with pytest.raises(ValueError, match="unknown face choice"):
        select_face(faces, "smallest")


def test_no_face_gives_the_message_or_the_centred_crop(detector):
    noise = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the 400x300 image by YuNet.*centred crop"):
        crop_portrait(noise, detector=detector)
    crop, box = crop_portrait(noise, detector=detector, if_no_face="centre")
    assert box == centre_box(400, 300) == CropBox(50, 0, 300, 400, 300)
    assert crop.shape == (512, 512, 3)


def test_rgba_and_grayscale_portraits(detector, hopper):
    rgba = np.concatenate([hopper, np.full(hopper.shape[:2] + (1,), 255, np.uint8)], axis=2)
    grey = cv2.cvtColor(hopper, cv2.COLOR_RGB2GRAY)
    for image in (rgba, grey, grey[:, :, None], hopper.astype(np.float32) / 255):
        _, box = crop_portrait(image, detector=detector)
        assert abs(box.left - crop_portrait(hopper, detector=detector)[1].left) <= 4
    transparent = rgba.copy()
    transparent[:, :, 3] = 0
    assert (as_rgb(transparent, background=(0, 255, 0)) == [0, 255, 0]).all()
    with pytest.raises(ValueError, match="expected an image"):
        as_rgb(np.zeros((4, 4, 2), np.uint8))


def test_large_photos_are_searched_on_a_small_copy(detector, hopper):
    big = cv2.resize(hopper, (3840, 4500), interpolation=cv2.INTER_CUBIC)
    _, small_box = crop_portrait(hopper, detector=detector)
    _, big_box = crop_portrait(big, detector=detector)
    scale = 3840 / 512
    assert abs(big_box.size - small_box.size * scale) < 0.05 * big_box.size
    assert abs(big_box.left - small_box.left * scale) < 0.05 * big_box.size


def test_crop_pads_with_black_outside_the_picture():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = cut_crop(image, CropBox(-50, -50, 100, 100, 100), size=100)
    assert (crop[:40, :40] == 0).all() and (crop[60:, 60:] == 200).all()


def test_s3fd_wrapper_applies_the_official_rule(monkeypatch):
    """face-alignment is optional (and its weights cannot be downloaded here): its detector class is
    replaced by one that records its input and returns fixed boxes in the 360 px image's coordinates."""
    import sys
    import types

    from float_model.face import S3FDDetector

    seen = {}

    class FakeSFD:
        def __init__(self, device, path_to_detector):
            seen["init"] = (device, path_to_detector)

        def detect_from_image(self, image):
            seen["shape"] = image.shape
            return [[10.0, 20.0, 110.0, 140.0, 0.97], [200.0, 20.0, 260.0, 90.0, 0.99], [5.0, 5.0, 50.0, 50.0, 0.9]]

    module = types.ModuleType("face_alignment.detection.sfd")
    module.FaceDetector = FakeSFD
    monkeypatch.setitem(sys.modules, "face_alignment", types.ModuleType("face_alignment"))
    monkeypatch.setitem(sys.modules, "face_alignment.detection", types.ModuleType("face_alignment.detection"))
    monkeypatch.setitem(sys.modules, "face_alignment.detection.sfd", module)

    detector = S3FDDetector("s3fd.pth")
    faces = detector(np.zeros((720, 1000, 3), np.uint8))  # mult = 360 / 720 = 0.5
    assert seen["init"] == ("cpu", "s3fd.pth") and seen["shape"][:2] == (360, 500)
    assert [(f.x1, f.y1, f.x2, f.y2) for f in faces] == [(400, 40, 520, 180), (20, 40, 220, 280)]  # int(coord / mult), > 0.95, best first
    assert select_face(faces, "best").score == 0.99
