"""The apply stage's library (osteoloc.apply): the refusal of an unfinished study or differing settings, the
seed ensemble, the external AUC interval and the gallery page (its entries and escaping)."""

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteoloc.apply.ensemble import ensemble_frame
from osteoloc.report.stats import auc_interval
from osteoloc.apply.gallery import hips_of, write_gallery, write_pictures
from osteoloc.apply.study import SettingsMismatch, StudyNotFinished, check_folders, checked_study, finished_study
from osteoloc.io.maps_h5 import maps_writer
from helpers import write_study_arrays
from osteoloc.names import MODELS, TARGETS

GROUPS = {"osteo_fem_sup": [13, 78], "osteo_fem_inf": [19], "osteo_acet_sup": [67], "osteo_acet_inf": [71]}
SCRIPT_ID = "<script>alert(1)</script>"


def _study_h5(path, subjects, size=32, spacing=1.4, seed=0):
    rng = np.random.default_rng(seed)
    n = len(subjects)
    groups = rng.uniform(2, size - 3, (n, 4, 2, 2)).astype(np.float32)
    groups[:, 1:, 1] = np.nan  # the one-point groups, NaN-padded as in a study
    write_study_arrays(path, {"image": rng.uniform(0, 1, (n, size, size)), "labels": rng.integers(0, 2, (n, 4)),
                              "groups": groups, "subject": subjects}, GROUPS, spacing_mm=spacing)


def _finished_study(folder, seeds=(0, 1), size=32, spacing=1.4, models=MODELS):
    """A results folder with what `finished_study` looks for (checkpoint files are not opened by it)."""
    _study_h5(folder / "preprocess" / "study.h5", ["a", "b"], size, spacing)
    for model in models:
        for seed in seeds:
            for name in ("train/{m}/seed{s}/best.pt", "explain/{m}/seed{s}/predictions.csv"):
                path = folder / name.format(m=model, s=seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
    return folder


def _config(results, crop_size=32, spacing=1.4, groups=GROUPS, bonefinder=""):
    return {"study": {"results": str(results)}, "cohort": {"bonefinder": {"command": bonefinder}},
            "preprocess": {"crop_size": crop_size, "spacing_mm": spacing, "groups": groups}}


def test_a_finished_study_lists_every_model_and_seed(tmp_path):
    study = finished_study(_finished_study(tmp_path / "study", models=("prior", "baseline", "arm_x")))
    assert [(r.model, r.seed) for r in study.runs] == [("baseline", 0), ("baseline", 1), ("prior", 0),
                                                       ("prior", 1), ("arm_x", 0), ("arm_x", 1)]
    assert study.settings == {"crop_size": 32, "spacing_mm": pytest.approx(1.4), "targets": list(TARGETS),
                              "groups": GROUPS, "landmark_source": "given points"}
    assert checked_study(study.folder, _config(tmp_path / "out")).runs == study.runs


def test_a_crop_size_mismatch_is_refused_naming_both_values(tmp_path):
    folder = _finished_study(tmp_path / "study", size=32)
    with pytest.raises(SettingsMismatch) as err:
        checked_study(folder, _config(tmp_path / "out", crop_size=48))
    assert "preprocess.crop_size: the study's is 32, the new cohort's 48" in str(err.value)
    assert "spacing" not in str(err.value)


def test_every_differing_setting_is_named(tmp_path):
    folder = _finished_study(tmp_path / "study")
    groups = GROUPS | {"osteo_acet_inf": [70]}
    with pytest.raises(SettingsMismatch) as err:
        checked_study(folder, _config(tmp_path / "out", spacing=0.9333, groups=groups, bonefinder="bf"))
    message = str(err.value)
    assert "preprocess.spacing_mm: the study's is 1.4" in message and "0.9333" in message
    assert "landmark indices" in message and "[71]" in message and "[70]" in message
    assert "the study's is 'given points', the new cohort's 'bonefinder'" in message


def test_an_unfinished_study_is_refused_naming_the_missing_file(tmp_path):
    folder = _finished_study(tmp_path / "study")
    (folder / "train/prior/seed1/best.pt").unlink()
    with pytest.raises(StudyNotFinished, match=r"prior/seed1/best\.pt: missing.*has not finished"):
        finished_study(folder)
    with pytest.raises(StudyNotFinished, match="no such study results folder"):
        finished_study(tmp_path / "nowhere")


def test_the_apply_results_folder_may_not_overlap_the_study(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        check_folders(tmp_path / "study", tmp_path / "study" / "apply")
    with pytest.raises(ValueError, match="overlap"):
        check_folders(tmp_path / "study", tmp_path)
    check_folders(tmp_path / "study", tmp_path / "elsewhere")


def _probabilities(subjects, models=MODELS, seeds=(0, 1), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for s in seeds:
            for row, subject in enumerate(subjects):
                for target in TARGETS:
                    rows.append({"row": row, "subject": subject, "visit": "V00", "side": "right",
                                 "target": target, "label": int(rng.integers(-1, 2)), "prob": rng.uniform(),
                                 "model": model, "seed": s})
    frame = pd.DataFrame(rows)
    # a hip's label does not depend on the run
    frame["label"] = frame.groupby(["row", "target"])["label"].transform("first")
    return frame


def test_the_ensemble_is_each_models_seed_mean_and_spread():
    probabilities = _probabilities(["a", "b", "c"])
    ensemble = ensemble_frame(probabilities, MODELS)
    assert len(ensemble) == 3 * len(TARGETS) * len(MODELS)
    hip = probabilities[(probabilities["row"] == 1) & (probabilities["target"] == TARGETS[2])]
    means = hip.groupby("model")["prob"].mean()
    got = ensemble[(ensemble["row"] == 1) & (ensemble["target"] == TARGETS[2])].set_index("model")
    assert got.loc["prior", "mean"] == pytest.approx(means["prior"], abs=1e-12)
    assert got.loc["baseline", "sd"] == pytest.approx(hip[hip["model"] == "baseline"]["prob"].std(ddof=1))
    assert got["disagreement"].iloc[0] == pytest.approx(abs(means["prior"] - means["baseline"]))


def test_the_auc_interval_holds_sklearns_auc():
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1], 30)
    scores = labels * 0.5 + rng.uniform(0, 1, 60)
    subjects = np.repeat(np.arange(30), 2)
    auc, low, high, defined = auc_interval(labels, scores, subjects, 500, 0)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    assert low < auc < high and defined == 500
    assert np.isnan(auc_interval(np.zeros(6), np.ones(6), np.arange(6), 100, 0)[0])


class _Entries(HTMLParser):
    def __init__(self):
        super().__init__()
        self.entries, self.links, self.images, self.scripts = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and attrs.get("class") == "entry":
            self.entries.append(attrs)
        elif tag == "a" and self.entries:
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1


def test_the_gallery_holds_one_entry_per_hip_and_target_and_escapes_ids(tmp_path):
    subjects = ["a", SCRIPT_ID, 'c"quoted&']
    study = tmp_path / "study.h5"
    _study_h5(study, subjects)
    rng = np.random.default_rng(2)
    maps = {}
    for model in MODELS:
        for seed in (0, 1):
            path = tmp_path / f"{model}_{seed}.h5"
            with maps_writer(path, np.arange(3), 32) as append:
                append(rng.uniform(0, 1, (2, 4, 32, 32)))
                append(rng.uniform(0, 1, (1, 4, 32, 32)))
            maps.setdefault(model, []).append(path)
    ensemble = ensemble_frame(_probabilities(subjects), MODELS)
    out = tmp_path / "gallery"
    assert write_pictures(study, maps, out, batch_size=2, full_scale=3, alpha=0.45) == 3 * len(TARGETS)
    page = write_gallery(hips_of(ensemble), list(maps), out, f"title {SCRIPT_ID}")
    text = page.read_text()
    parser = _Entries()
    parser.feed(text)
    assert len(parser.entries) == 3 * len(TARGETS)
    assert len({(e["data-row"], e["data-target"]) for e in parser.entries}) == 3 * len(TARGETS)
    assert {e["data-subject"] for e in parser.entries} == {f"{s} V00 right" for s in subjects}  # unescaped back
    assert parser.scripts == 1  # the page's own script only
    assert SCRIPT_ID not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert all((out / src).is_file() for src in parser.images + parser.links)
    assert len(parser.links) == len(parser.images) == 3 * len(TARGETS)


def test_each_resamples_auc_is_sklearns_auc_of_the_drawn_hips():
    from osteoloc.report.stats import resampled_aucs

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.uniform(0, 1, 60), 1)  # ties
    codes = np.repeat(np.arange(30), 2)  # two hips per subject
    draws = rng.integers(0, 30, (50, 30))
    got = resampled_aucs(labels, scores, codes, draws)
    for b, draw in enumerate(draws):
        hips = np.concatenate([np.flatnonzero(codes == k) for k in draw])
        if len(np.unique(labels[hips])) == 2:
            assert got[b] == pytest.approx(roc_auc_score(labels[hips], scores[hips]), abs=1e-12)
        else:
            assert np.isnan(got[b])


def test_a_cohort_without_labels_gets_every_hip_with_unknown_grades(tmp_path):
    from osteoloc.apply.command import unknown_labels
    from osteoloc.io.labels import read_labels

    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"image_path": ["a.dcm", "b.dcm"], "subject": ["S1", "S2"], "visit": ["V00", "V01"],
                  "cohort": ["X", "X"], "points_path": ["a.pts", "b.pts"]}).to_csv(manifest, index=False)
    unknown_labels(manifest, tmp_path / "labels.csv")
    table = read_labels(tmp_path / "labels.csv")
    assert len(table.grades) == 4 and not table.problems
    assert all((grades == -1).all() for grades in table.grades.values())
