"""Dataset readers: real shared files for 300W, AFLW2000 and BIWI; self-written real-format files for the rest."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

import trainer.datasets.dataset as dataset_module
from app.core.pose import fit_pose, matrix_to_angles
from tests.conftest import require_shared
from trainer.datasets.biwi import biwi_angles_to_pose
from trainer.datasets.dataset import FaceDataset, read_image
from trainer.datasets.registry import KINDS, open_dataset, parse_spec
from trainer.datasets.w300 import read_pts


def raw_pts(path: Path) -> np.ndarray:
    """The numbers between the braces of a ``.pts``, parsed independently of the reader."""
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.array(lines, dtype=np.float64).reshape(-1, 2)


def write_pts(path: Path, points: np.ndarray) -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def random_image(path: Path, height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return image


# ---------------------------------------------------------------- 300W


@pytest.mark.parametrize(("folder", "count"), [("afw", 337), ("helen_train", 870), ("helen_test", 330)])
def test_300w_folders_hold_their_documented_face_counts(folder: str, count: int) -> None:
    data = open_dataset(f"300w:{require_shared('300w', folder)}")
    assert len(data) == count == len(data.names) == len(set(data.names))
    assert data.kind == "300w"


def test_300w_landmarks_are_the_pts_values_moved_to_0_based() -> None:
    root = require_shared("300w", "afw")
    data = open_dataset(f"300w:{root}")
    for index in (0, len(data) // 2, len(data) - 1):
        sample = data[index]
        expected = raw_pts(root / f"{data.names[index]}.pts") - 1.0
        np.testing.assert_allclose(sample.landmarks, expected, atol=1e-4)
        assert sample.landmarks.dtype == np.float32 and sample.landmarks.shape == (68, 2)
        assert sample.mask.all() and sample.visibility.all() and sample.pose is None
        np.testing.assert_allclose(sample.box, [*expected.min(0), *expected.max(0)], atol=1e-4)
        assert sample.name == data.names[index]


@pytest.mark.parametrize("folder", ["afw", "helen_train", "helen_test"])
def test_300w_landmarks_lie_inside_their_rgb_image(folder: str) -> None:
    data = open_dataset(f"300w:{require_shared('300w', folder)}")
    for index in range(0, len(data), len(data) // 4):
        sample = data[index]
        height, width = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        assert (sample.landmarks >= 0).all()
        assert (sample.landmarks[:, 0] <= width - 1).all() and (sample.landmarks[:, 1] <= height - 1).all()


def test_300w_dataset_lists_files_without_reading_images(monkeypatch: pytest.MonkeyPatch) -> None:
    root = require_shared("300w", "helen_train")
    calls = []
    real_imread = cv2.imread
    monkeypatch.setattr(dataset_module.cv2, "imread", lambda *a, **k: calls.append(a) or real_imread(*a, **k))
    data = open_dataset(f"300w:{root}")
    assert len(data) == 870 and calls == []
    data[-1]
    assert len(calls) == 1 and calls[0][0] == str(root / f"{data.names[-1]}.jpg")


def test_300w_whole_folder_is_searched_recursively_with_relative_names() -> None:
    data = open_dataset(f"300w:{require_shared('300w')}")
    assert len(data) == 337 + 870 + 330
    assert {name.split("/")[0] for name in data.names} == {"afw", "helen_train", "helen_test"}


def test_300w_reads_png_images_and_rgb_channel_order(tmp_path: Path) -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    image[..., 0] = 255  # blue in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "face.png"), image)
    points = np.random.default_rng(1).uniform(5, 35, (68, 2))
    write_pts(tmp_path / "face.pts", points)
    sample = open_dataset(f"300w:{tmp_path}")[0]
    assert sample.image[0, 0].tolist() == [0, 0, 255]
    np.testing.assert_allclose(sample.landmarks, points - 1, atol=1e-3)


@pytest.mark.parametrize("content", [
    "version: 1\n{\n1 2\n}\n",                                        # no n_points
    "version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n",                      # too few lines
    "version: 1\nn_points: 2\n{\n1 2\n3 four\n}\n",                   # not a number
    "version: 1\nn_points: 2\n{\n1 2\n3 4\n",                         # no closing brace
    "version: 1\nn_points: 2\n{\n1 2 3\n3 4 5\n}\n",                  # three columns
])
def test_malformed_pts_raises_a_value_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad_face.pts"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad_face.pts"):
        read_pts(path)
    random_image(tmp_path / "bad_face.jpg")
    data = open_dataset(f"300w:{tmp_path}")
    with pytest.raises(ValueError, match="bad_face.pts"):
        data[0]


def test_pts_without_an_image_is_refused_naming_it(tmp_path: Path) -> None:
    write_pts(tmp_path / "lonely.pts", np.ones((68, 2)))
    with pytest.raises(FileNotFoundError, match="lonely.pts"):
        open_dataset(f"300w:{tmp_path}")


def test_unreadable_image_raises_a_value_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    write_pts(tmp_path / "broken.pts", np.ones((68, 2)))
    with pytest.raises(ValueError, match="broken.jpg"):
        open_dataset(f"300w:{tmp_path}")[0]
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(tmp_path / "broken.jpg")


def test_indexing_accepts_negative_indices_and_rejects_out_of_range(tmp_path: Path) -> None:
    for k in range(2):
        random_image(tmp_path / f"f{k}.jpg", seed=k)
        write_pts(tmp_path / f"f{k}.pts", np.full((68, 2), 10.0 + k))
    data = open_dataset(f"300w:{tmp_path}")
    assert isinstance(data, FaceDataset)
    assert data[-1].name == "f1" and [s.name for s in data] == ["f0", "f1"]
    with pytest.raises(IndexError):
        data[2]
    with pytest.raises(TypeError):
        data["f0"]  # type: ignore[index]


# ---------------------------------------------------------------- AFLW2000


def _labels(root: Path) -> dict[str, list[float]]:
    with open(root / "labels.csv", newline="") as handle:
        return {r["image"]: [float(r["yaw_deg"]), float(r["pitch_deg"]), float(r["roll_deg"])]
                for r in csv.DictReader(handle)}


def test_aflw2000_lists_all_25_faces() -> None:
    root = require_shared("aflw2000_mini")
    data = open_dataset(f"aflw2000:{root}")
    assert len(data) == 25 and sorted(data.names) == sorted(_labels(root))


def test_aflw2000_pose_from_mat_is_pose_para_in_yaw_pitch_roll_degrees() -> None:
    root = require_shared("aflw2000_mini")
    data = open_dataset(f"aflw2000:{root}")
    checked = 0
    for index, name in enumerate(data.names):
        mat = root / f"{name}.mat"
        if not mat.exists():
            continue
        pitch, yaw, roll = scipy.io.loadmat(str(mat))["Pose_Para"].ravel()[:3]
        sample = data[index]
        np.testing.assert_allclose(sample.pose, np.degrees([yaw, pitch, roll]), atol=1e-4)
        assert sample.pose.dtype == np.float32
        checked += 1
    assert checked == 16


def test_aflw2000_faces_without_mat_take_labels_csv_and_no_landmarks() -> None:
    root = require_shared("aflw2000_mini")
    data = open_dataset(f"aflw2000:{root}")
    labels = _labels(root)
    without = [i for i, n in enumerate(data.names) if not (root / f"{n}.mat").exists()]
    assert len(without) == 9
    for index in without:
        sample = data[index]
        np.testing.assert_allclose(sample.pose, labels[sample.name], atol=1e-4)
        assert sample.landmarks.shape == (68, 2) and not sample.landmarks.any()
        assert not sample.mask.any() and not sample.visibility.any() and sample.box is None


def test_aflw2000_landmarks_are_pt3d_68_shifted_to_0_based_inside_the_image() -> None:
    root = require_shared("aflw2000_mini")
    data = open_dataset(f"aflw2000:{root}")
    for index, name in enumerate(data.names):
        if not (root / f"{name}.mat").exists():
            continue
        sample = data[index]
        pt3d = scipy.io.loadmat(str(root / f"{name}.mat"))["pt3d_68"]
        np.testing.assert_allclose(sample.landmarks, pt3d[:2].T - 1.0, atol=1e-4)
        height, width = sample.image.shape[:2]
        assert sample.mask.all() and sample.visibility.all()
        assert (sample.landmarks >= 0).all() and (sample.landmarks < [width, height]).all()
        np.testing.assert_allclose(sample.box, [*sample.landmarks.min(0), *sample.landmarks.max(0)])


def test_aflw2000_landmarks_and_pose_agree_through_the_mean_face() -> None:
    """PnP of the read landmarks on the mean face recovers the read pose: order and signs line up."""
    data = open_dataset(f"aflw2000:{require_shared('aflw2000_mini')}")
    mean_face = np.loadtxt(require_shared("mean_face", "bfm68.txt"))
    errors = [np.degrees(fit_pose(s.landmarks, mean_face)[:3]) - s.pose for s in data if s.mask.all()]
    assert len(errors) == 16
    assert np.abs(errors).mean() < 2.0 and np.abs(errors).max() < 8.0


def _write_fitting(folder: Path, name: str, **extra: np.ndarray) -> np.ndarray:
    random_image(folder / f"{name}.jpg")
    points = np.random.default_rng(1).uniform(5, 50, (3, 68))
    scipy.io.savemat(str(folder / f"{name}.mat"),
                     {"Pose_Para": np.array([[0.1, -0.4, 0.2, 0, 0, 0, 1]]), "pt3d_68": points, **extra})
    return points


def test_aflw2000_visibility_68_in_the_mat_becomes_the_sample_visibility(tmp_path: Path) -> None:
    visible = np.ones(68, np.uint8)
    visible[[0, 1, 2, 36, 40]] = 0
    _write_fitting(tmp_path, "turned", visibility_68=visible[None])
    _write_fitting(tmp_path, "plain")
    data = open_dataset(f"aflw2000:{tmp_path}")
    turned, plain = data[data.names.index("turned")], data[data.names.index("plain")]
    np.testing.assert_array_equal(turned.visibility, visible == 1)
    assert turned.mask.all() and turned.visibility.dtype == bool
    assert plain.visibility.all()


def test_aflw2000_visibility_68_of_the_wrong_length_is_refused_naming_the_file(tmp_path: Path) -> None:
    _write_fitting(tmp_path, "broken", visibility_68=np.ones((1, 21)))
    with pytest.raises(ValueError, match="broken.mat.*visibility_68"):
        open_dataset(f"aflw2000:{tmp_path}")[0]


# ---------------------------------------------------------------- BIWI


def test_biwi_reads_ten_frames_with_bin_angles_in_our_convention() -> None:
    root = require_shared("biwi_mini")
    data = open_dataset(f"biwi:{root}")
    assert len(data) == 10 and data.names[0] == "hpdb/01/frame_00166"
    for index in (0, 9):
        sample = data[index]
        centre_pitch_yaw_roll = np.fromfile(root / f"{sample.name}_pose.bin", dtype="<f4")
        assert 500 < centre_pitch_yaw_roll[2] < 1500  # head centre depth in mm
        np.testing.assert_allclose(sample.pose, biwi_angles_to_pose(*centre_pitch_yaw_roll[3:]), atol=1e-5)
        assert sample.image.shape == (480, 640, 3)
        assert sample.landmarks.shape == (0, 2) and sample.mask.shape == (0,) and sample.box is None


def test_biwi_angles_to_pose_keeps_yaw_and_roll_and_negates_pitch() -> None:
    assert biwi_angles_to_pose(10.0, 20.0, 30.0) == (20.0, -10.0, 30.0)


def test_biwi_convention_matches_a_face_mesh_posed_on_the_mean_face() -> None:
    """A MediaPipe mesh fitted to the BFM mean face sees BIWI's axes, pitch sign and yaw trend as converted."""
    mp = pytest.importorskip("mediapipe")
    data = open_dataset(f"biwi:{require_shared('biwi_mini')}")
    ibug, mesh_ids = [36, 39, 42, 45, 27, 30, 33, 48, 54, 8], [33, 133, 362, 263, 168, 1, 2, 61, 291, 152]
    reference = np.loadtxt(require_shared("mean_face", "bfm68.txt"))[ibug]
    reference -= reference.mean(0)
    measured = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        for sample in data:
            found = mesh.process(sample.image).multi_face_landmarks
            assert found, f"no face found in {sample.name}"
            height, width = sample.image.shape[:2]
            face = np.array([[p.x * width, p.y * height, -p.z * width] for p in found[0].landmark])
            # BIWI's camera frame is x right, y down: the head centre, projected with a nominal Kinect
            # focal length, lands on the face (a mirrored x or an upward y would miss by 40-70 px).
            centre = np.fromfile(data.root / f"{sample.name}_pose.bin", dtype="<f4")[:3]
            projected = np.array([width / 2, height / 2]) + 525.0 * centre[:2] / centre[2]
            assert np.linalg.norm(projected - face[:, :2].mean(0)) < 25.0
            points = face[mesh_ids]
            u, _, vt = np.linalg.svd((points - points.mean(0)).T @ reference)
            rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
            measured.append(np.degrees(matrix_to_angles(rotation)))
    measured, labels = np.array(measured), np.array([s.pose for s in data])
    assert np.abs(measured[:, 1] - labels[:, 1]).mean() < 5.0  # BIWI pitch ≈ -10°, ours ≈ +10°
    assert np.corrcoef(measured[:, 0], labels[:, 0])[0, 1] > 0.8  # yaw sweeps -1.4° → +6.6°


def _biwi_rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """BIWI's own Euler convention (``euler_to_rotation_matrix`` released with the database): Rx @ Ry @ Rz."""
    a, b, c = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def test_biwi_txt_rotation_gives_the_same_pose_as_the_bin_angles(tmp_path: Path) -> None:
    folder = tmp_path / "hpdb" / "07"
    folder.mkdir(parents=True)
    angles = [(20.0, -35.0, 10.0), (-15.0, 50.0, -25.0)]
    for k, (pitch, yaw, roll) in enumerate(angles):
        random_image(folder / f"frame_{k:05d}_rgb.png", 48, 64, seed=k)
        rows = "\n".join(" ".join(f"{v:.8f}" for v in row) for row in _biwi_rotation(pitch, yaw, roll))
        (folder / f"frame_{k:05d}_pose.txt").write_text(f"{rows} \n\n12.5 -40.2 905.3 \n")
    random_image(folder / "frame_00009_rgb.png", 48, 64)  # no pose file: left out
    data = open_dataset(f"biwi:{tmp_path}")
    assert data.names == ["hpdb/07/frame_00000", "hpdb/07/frame_00001"]
    for sample, (pitch, yaw, roll) in zip(data, angles):
        np.testing.assert_allclose(sample.pose, biwi_angles_to_pose(pitch, yaw, roll), atol=1e-4)
        assert sample.image.shape == (48, 64, 3)


@pytest.mark.parametrize(("name", "content"), [
    ("frame_00000_pose.txt", "1 0 0\n0 1 0\n0 0 1\n"),                     # no translation
    ("frame_00000_pose.txt", "2 0 0\n0 1 0\n0 0 1\n\n1 2 3\n"),            # not a rotation
    ("frame_00000_pose.bin", np.zeros(5, "<f4").tobytes()),               # five floats
])
def test_malformed_biwi_pose_raises_naming_the_file(tmp_path: Path, name: str, content: str | bytes) -> None:
    random_image(tmp_path / "frame_00000_rgb.png")
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(ValueError, match=name):
        open_dataset(f"biwi:{tmp_path}")[0]


# ---------------------------------------------------------------- COFW


def _cofw_mat(path: Path, split: str = "T") -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A COFW ``.mat`` in the released v5 layout: a cell array of RGB/greyscale images, phis and boxes."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), rng.integers(0, 256, (30, 60), dtype=np.uint8)]
    cells = np.empty((len(images), 1), dtype=object)
    for k, image in enumerate(images):
        cells[k, 0] = image
    xy = rng.uniform(1, 30, (len(images), 58))
    flags = (rng.random((len(images), 29)) < 0.3).astype(np.float64)
    phis = np.concatenate([xy, flags], 1)
    boxes = np.array([[3.0, 4.0, 20.0, 25.0], [10.0, 2.0, 30.0, 22.0]])
    scipy.io.savemat(str(path), {f"Is{split}": cells, f"phis{split}": phis, f"bboxes{split}": boxes})
    return images, phis, boxes


@pytest.mark.parametrize("split", ["T", "Tr"])
def test_cofw_mat_gives_0_based_landmarks_occlusion_as_visibility_and_corner_boxes(tmp_path: Path,
                                                                                 split: str) -> None:
    path = tmp_path / "COFW_test_color.mat"
    images, phis, boxes = _cofw_mat(path, split)
    data = open_dataset(f"cofw:{path}")
    assert len(data) == 2 and data.names == ["COFW_test_color/0000", "COFW_test_color/0001"]
    for k, sample in enumerate(data):
        np.testing.assert_allclose(sample.landmarks[:, 0], phis[k, :29] - 1, atol=1e-4)
        np.testing.assert_allclose(sample.landmarks[:, 1], phis[k, 29:58] - 1, atol=1e-4)
        assert sample.landmarks.shape == (29, 2) and sample.mask.all()
        np.testing.assert_array_equal(sample.visibility, phis[k, 58:] == 0)
        x, y, w, h = boxes[k]
        np.testing.assert_allclose(sample.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        assert sample.pose is None and sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
    np.testing.assert_array_equal(data[0].image, images[0])  # stored RGB stays RGB
    np.testing.assert_array_equal(data[1].image, np.repeat(images[1][:, :, None], 3, 2))


def test_cofw_v73_file_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "COFW_train_color.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    path.write_bytes(header.ljust(116, b" ") + bytes(8) + b"\x00\x02IM" + bytes(384))
    with pytest.raises(ValueError, match=r"COFW_train_color.mat.*v7\.3"):
        open_dataset(f"cofw:{path}")


def test_cofw_file_without_cofw_variables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    scipy.io.savemat(str(path), {"x": np.ones(3)})
    with pytest.raises(ValueError, match="other.mat.*not a COFW file"):
        open_dataset(f"cofw:{path}")


# ---------------------------------------------------------------- WFLW


def _wflw_line(rng: np.random.Generator, relpath: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    points = rng.uniform(0, 50, (98, 2))
    box = np.array([2.0, 3.0, 55.0, 58.0])
    flags = rng.integers(0, 2, 6)
    fields = [f"{v:.6f}" for v in points.ravel()] + [f"{int(v)}" for v in box] + [str(f) for f in flags]
    return " ".join([*fields, relpath]), points, box, flags.astype(bool)


def _wflw_tree(root: Path) -> tuple[Path, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(5)
    for relpath in ("0--Parade/0_Parade_1.jpg", "1--Handshaking/1_Hand_2.jpg"):
        (root / "WFLW_images" / relpath).parent.mkdir(parents=True, exist_ok=True)
        random_image(root / "WFLW_images" / relpath, 64, 64)
    lines = [_wflw_line(rng, r) for r in ("0--Parade/0_Parade_1.jpg", "0--Parade/0_Parade_1.jpg",
                                           "1--Handshaking/1_Hand_2.jpg")]
    annotation = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_test.txt"
    annotation.parent.mkdir(parents=True)
    annotation.write_text("\n".join(line for line, *_ in lines) + "\n")
    return annotation, lines


def test_wflw_annotation_file_finds_images_two_levels_up_with_unique_names(tmp_path: Path) -> None:
    annotation, lines = _wflw_tree(tmp_path)
    data = open_dataset(f"wflw:{annotation}")
    assert data.names == ["0--Parade/0_Parade_1_0", "0--Parade/0_Parade_1_1", "1--Handshaking/1_Hand_2_0"]
    for sample, (_, points, box, flags), attributes in zip(data, lines, data.attributes):
        np.testing.assert_allclose(sample.landmarks, points, atol=1e-4)
        np.testing.assert_allclose(sample.box, box)
        np.testing.assert_array_equal(attributes, flags)
        assert sample.landmarks.shape == (98, 2) and sample.mask.all() and sample.visibility.all()
        assert sample.pose is None and sample.image.shape == (64, 64, 3)


def test_wflw_without_an_images_folder_is_refused(tmp_path: Path) -> None:
    annotation = tmp_path / "list_98pt_rect_attr_test.txt"
    annotation.write_text(_wflw_line(np.random.default_rng(0), "a/b.jpg")[0] + "\n")
    with pytest.raises(FileNotFoundError, match="WFLW_images"):
        open_dataset(f"wflw:{annotation}")


def test_wflw_short_line_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    annotation, _ = _wflw_tree(tmp_path)
    annotation.write_text(annotation.read_text() + "1 2 3 a/b.jpg\n")
    with pytest.raises(ValueError, match="list_98pt_rect_attr_test.txt line 4"):
        open_dataset(f"wflw:{annotation}")


# ---------------------------------------------------------------- specs


def test_kinds_are_the_five_readers() -> None:
    assert KINDS == ("300w", "aflw2000", "biwi", "cofw", "wflw")


def test_parse_spec_resolves_the_300w_lp_alias_and_case(tmp_path: Path) -> None:
    assert parse_spec(f"300W-LP:{tmp_path}") == ("aflw2000", tmp_path)
    assert parse_spec(f"biwi:{tmp_path}") == ("biwi", tmp_path)


@pytest.mark.parametrize(("spec", "message"), [
    ("menpo:/tmp", "unknown dataset kind 'menpo'.*300w, aflw2000, biwi, cofw, wflw"),
    ("300w", "must be KIND:PATH"),
    ("300w:", "must be KIND:PATH"),
    ("300w:/no/such/folder", "/no/such/folder.*does not exist"),
])
def test_bad_specs_raise_value_errors_saying_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_missing_path_is_also_a_file_not_found_error() -> None:
    with pytest.raises(FileNotFoundError):
        open_dataset("cofw:/no/such/COFW_test_color.mat")
