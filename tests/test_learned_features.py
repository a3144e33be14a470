"""The shipped learned features on real photos it never saw, the Features API, and the learned extractor
running inside the KLT tracker."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from slam.learned.data import is_validation, skimage_photo_dir
from slam.learned.features import DetectorConfig, LearnedFeatures, sample_descriptors
from slam.learned.homography import eval_pair
from slam.learned.keypoints import cell_nms
from slam.learned.matching import match_descriptors
from slam.learned.metrics import match_errors, mma, repeatability
from slam.learned.model import CornerResponse, KeypointNet, NetConfig, standardize
from slam.learned.weights import save_weights
from slam.messages import DataError

HELD_OUT = ("coffee.png", "moon.png")  # scikit-image photos in the fixed validation tenth: never trained on


@pytest.fixture(scope="module")
def shipped():
    return LearnedFeatures()


@pytest.fixture(scope="module")
def held_out_photos():
    folder = skimage_photo_dir()
    paths = [folder / name for name in HELD_OUT]
    assert all(is_validation(p) for p in paths)
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]


def _scores(features: LearnedFeatures, images, seed=0):
    rng = np.random.default_rng(seed)
    acc, rep = [], []
    for image in images:
        for _ in range(2):
            warped, H = eval_pair(image, rng)
            a, b = features(image), features(warped)
            errors = match_errors(a.xy, b.xy, match_descriptors(a.descriptors, b.descriptors), H)
            acc.append(mma(errors, (3,))[0])
            rep.append(repeatability(a.xy, b.xy, H, image.shape, warped.shape))
    return float(np.mean(acc)), float(np.mean(rep))


def test_shipped_weights_match_held_out_photos_and_random_weights_do_not(shipped, held_out_photos, tmp_path):
    accuracy, rep = _scores(shipped, held_out_photos)
    assert accuracy >= 0.55 and rep >= 0.4, (accuracy, rep)  # shipped v1: 0.67 and 0.62
    torch.manual_seed(0)
    untrained = LearnedFeatures(save_weights(KeypointNet(), tmp_path / "random.pt"))
    assert _scores(untrained, held_out_photos)[0] < 0.3  # the same check fails without training (0.01)


def test_features_api(shipped, held_out_photos):
    image = np.ascontiguousarray(held_out_photos[0][:150, :230])  # not a multiple of 16: padded inside
    f = shipped(image, max_count=100)
    assert 20 < len(f) <= 100 and f.descriptors.shape == (len(f), shipped.descriptor_dim)
    assert f.xy.min() >= 0 and np.all(f.xy < [230, 150])
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(f.scores) <= 0)
    mask = np.zeros_like(image)
    mask[:, :100] = 255
    masked = shipped(image, mask)
    assert len(masked) > 0 and masked.xy[:, 0].max() < 101  # refined by at most a pixel
    with pytest.raises(ValueError, match="uint8"):
        shipped(image.astype(np.float32))


@pytest.mark.parametrize("stride", [4, 8])
def test_keypoints_and_descriptors_are_the_exported_graphs(shipped, held_out_photos, tmp_path, stride):
    """Inference skips the dense descriptor map and the in-net corner layer (OpenCV's instead) and folds the
    batch norms: the same keypoints and descriptors as the whole graph, which is what Core ML runs."""
    if stride == 4:
        features = shipped
    else:  # a stride-8 net with batch-norm statistics that make folding matter
        torch.manual_seed(1)
        net = KeypointNet(NetConfig(descriptor_stride=8))
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        features = LearnedFeatures(save_weights(net, tmp_path / "stride8.pt"), DetectorConfig(threshold=0.0))
    image = np.ascontiguousarray(held_out_photos[1][:300, :420])  # padded inside
    got = features(image)
    prob, dense = features.dense(image)
    c = features.config
    xy, scores = cell_nms(prob, image.shape[1], image.shape[0], c.threshold, c.nms_radius, c.max_keypoints, None,
                          c.border)
    assert len(xy) > 100 and len(got) == len(xy)
    np.testing.assert_allclose(got.xy, xy, atol=1e-3)
    np.testing.assert_allclose(got.scores, scores, atol=1e-5)
    np.testing.assert_allclose(got.descriptors, sample_descriptors(dense, xy, stride), atol=1e-4)


def test_opencv_corner_response_is_the_corner_layer(held_out_photos):
    x = standardize(torch.from_numpy(held_out_photos[0].astype(np.float32) / 255)[None, None])
    layer = CornerResponse()
    with torch.no_grad():
        expected = layer(x)[0, 0].numpy()
    np.testing.assert_allclose(layer.opencv(x[0, 0].numpy()), expected, atol=1e-6)
    assert expected.max() > 0.1


def test_detector_config_validation():
    with pytest.raises(ValueError, match="threshold"):
        DetectorConfig(threshold=1.5)


def test_learned_extractor_through_the_tracker():
    from slam.datasets.synthetic import build, make_config
    from slam.frontend import FeatureTracker, TrackerConfig
    from slam.messages import Calibration, CameraFrame, ImageArray

    sequence = build(make_config("room_mav", seconds=4.5, width=376, height=240, workers=1), seed=0)
    config = TrackerConfig(max_features=120, cell_size=24.0, min_distance=10.0, extractor="learned")
    tracker = FeatureTracker(Calibration(sequence.cameras), config)
    assert tracker.extractor.name == "learned"
    previous, kept = None, []
    for k in range(70, 76):
        images = sequence.render_frame(k)
        out = tracker.process(CameraFrame(int(sequence.frame_t_ns[k]), tuple(ImageArray(i) for i in images),
                                          index=k))
        ids = set(out[0].ids.tolist())
        if previous is not None:
            kept.append(len(ids & previous) / len(previous))
        previous = ids
        assert len(out) == 2 and len(out[1].ids) > 0.3 * len(out[0].ids)  # stereo matches of the features
    assert len(previous) >= 100 and min(kept) > 0.7  # learned keypoints are KLT-trackable
    descriptors = tracker.extractor.last_features.descriptors
    assert descriptors.shape[1] == 64 and len(descriptors) > 0


def test_learned_extractor_honours_mask_grid_and_bad_weights(held_out_photos, tmp_path):
    from slam.frontend import make_extractor

    image = held_out_photos[0]
    extractor = make_extractor("learned", cell_size=64.0, max_per_cell=2, min_distance=12.0)
    mask = np.full(image.shape, 255, np.uint8)
    mask[:, image.shape[1] // 2:] = 0
    xy, score = extractor.detect(image, mask, 60)
    assert 0 < len(xy) <= 60 and np.all(xy[:, 0] < image.shape[1] // 2 + 1)
    cells = (xy[:, 1] // 64).astype(int) * 100 + (xy[:, 0] // 64).astype(int)
    assert np.bincount(cells).max() <= 2
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    assert d.min() >= 12.0
    assert extractor.detect(image, None, 0)[0].shape == (0, 2)
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    with pytest.raises(DataError, match="bad.pt"):
        make_extractor("learned", weights=str(bad))


def test_learned_extractor_ranks_by_trackability(held_out_photos):
    from slam.frontend import make_extractor

    image = held_out_photos[1]
    eigenvalue = cv2.cornerMinEigenVal(image, 3, 3)
    found = {}
    for power, floor in ((0.0, 0.0), (0.5, 1e-3)):
        extractor = make_extractor("learned", eigenvalue_power=power, min_eigenvalue=floor)
        xy, score = extractor.detect(image, None, 150)
        assert np.all(np.diff(score) <= 0)
        np.testing.assert_array_equal(extractor.last_features.xy, xy)  # descriptors belong to these keypoints
        px = np.rint(xy).astype(int)
        found[power] = {tuple(p): (s, e) for p, s, e in zip(xy.tolist(), score, eigenvalue[px[:, 1], px[:, 0]])}
    plain, tracked = found[0.0], found[0.5]
    assert len(plain) == 150 and 0 < len(tracked) < 150  # the floor drops weak corners on this photo
    assert min(e for _, e in tracked.values()) > 1e-3 and min(e for _, e in plain.values()) < 1e-3
    common = [p for p in tracked if p in plain]
    assert len(common) > 50
    ratio = np.array([tracked[p][0] / plain[p][0] for p in common])
    np.testing.assert_allclose(ratio, np.sqrt([tracked[p][1] for p in common]), rtol=1e-4)  # prob x sqrt(eig)
    with pytest.raises(ValueError, match="eigenvalue_power"):
        make_extractor("learned", eigenvalue_power=-1.0)
