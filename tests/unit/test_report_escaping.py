"""No raw markup from user data: a subject id and a grade cell holding HTML, in the phantom's manifest and
labels, reach summary.md's exclusions table as inert text; a Markdown renderer that passes raw HTML through
(CommonMark) shows them as text, never as elements."""

import shutil

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.cohort.phantom.cohort import make_cohort
from osteoloc.preprocess.stages import preprocess_study
from osteoloc.report.tables import markdown_text, summary_markdown

PHANTOM = {"subjects": 3, "seed": 4, "broken_fraction": 0, "spacing_mm": [1.0, 1.0],
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0}}}
SCRIPT = "<script>alert('id')</script>"
IMAGE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def exclusions(tmp_path_factory):
    """The exclusions table of the phantom preprocessed with a script as one subject id (its hips have no
    label row) and an image tag as one grade cell (junk)."""
    folder = tmp_path_factory.mktemp("phantom")
    make_cohort(PHANTOM, folder)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[0, "subject"] = SCRIPT
    manifest.to_csv(folder / "manifest.csv", index=False)
    labels = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    labels.loc[labels["subject"] == manifest.loc[1, "subject"], "osteo_fem_sup"] = IMAGE
    labels.to_csv(folder / "labels.csv", index=False)
    path = folder / "exclusions.csv"
    preprocess_study(folder / "manifest.csv", folder / "labels.csv", folder / "study.h5", path, crop_size=64,
                     spacing_mm=1.0, groups=DEFAULT_GROUPS, max_excluded_fraction=1.0)
    shutil.rmtree(folder / "images")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def summary(exclusions, study_name="phantom"):
    tables = {"tableA1": pd.DataFrame(), "auc": pd.DataFrame({"seed": []})}
    return summary_markdown(study_name, tables, exclusions, 4, [0])


def test_ids_and_cells_reach_summary_md_as_text_not_markup(exclusions):
    assert (exclusions["subject"] == SCRIPT).any() and exclusions["reason"].str.contains(IMAGE, regex=False).any()
    text = summary(exclusions, study_name="<b>study</b>")
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert "&lt;script&gt;alert('id')&lt;/script&gt;" in rendered  # shown as the text it is
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert rendered.count("<tr>") == len(exclusions) + 1  # no cell broke the table


@pytest.mark.parametrize("value", ["a | b", "**bold**", "[link](javascript:alert(1))", "`code`", "x_y_z"])
def test_markdown_markup_in_a_cell_renders_as_the_cell_s_text(value):
    rendered = MarkdownIt("commonmark").enable("table").render(f"| c |\n|---|\n| {markdown_text(value)} |\n")
    assert f"<td>{value.replace('&', '&amp;')}</td>" in rendered.replace("&quot;", '"')
