"""DICOM reader: variants in the wild and every refusal names the file."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from osteoloc.io.dicom import read_dicom, read_radiograph
from helpers import write_dicom


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4096, size=(40, 56)).astype(np.uint16)


def test_monochrome2_pixels_and_spacing(tmp_path, pixels):
    path = write_dicom(tmp_path / "a.dcm", pixels, spacing=0.15)
    image, spacing = read_radiograph(path)
    assert image.dtype == np.float32 and image.shape == (40, 56)
    np.testing.assert_array_equal(image, pixels.astype(np.float32))
    assert spacing == pytest.approx((0.15, 0.15))


def test_monochrome1_is_inverted(tmp_path, pixels):
    path = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    image, _ = read_radiograph(path)
    np.testing.assert_array_equal(image, pixels.max() - pixels.astype(np.float32))


def test_rle_compressed_decodes_to_the_same_pixels(tmp_path, pixels):
    path = write_dicom(tmp_path / "rle.dcm", pixels, bits=16, compress=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == RLELossless
    image, _ = read_radiograph(path)
    np.testing.assert_array_equal(image, pixels.astype(np.float32))


def test_imager_pixel_spacing_fallback(tmp_path, pixels):
    path = write_dicom(tmp_path / "imager.dcm", pixels, spacing=0.143, spacing_tag="ImagerPixelSpacing")
    radiograph = read_dicom(path)
    assert radiograph.spacing == pytest.approx((0.143, 0.143))
    assert radiograph.spacing_source == "ImagerPixelSpacing" and radiograph.spacing_in_header


def test_pixel_spacing_wins_over_given_spacing(tmp_path, pixels):
    path = write_dicom(tmp_path / "both.dcm", pixels, spacing=0.2)
    assert read_radiograph(path, spacing=0.5)[1] == pytest.approx((0.2, 0.2))


def test_given_spacing_for_a_spacing_less_file(tmp_path, pixels):
    path = write_dicom(tmp_path / "none.dcm", pixels, spacing=None)
    with pytest.raises(ValueError, match="none.dcm.*spacing"):
        read_radiograph(path)
    radiograph = read_dicom(path, spacing=0.3)
    assert radiograph.spacing == (0.3, 0.3) and not radiograph.spacing_in_header


@pytest.mark.parametrize("kwargs, message", [
    (dict(spacing=(0.2, 0.25)), "anisotropic"),
    (dict(photometric="RGB"), "colour"),
    (dict(extra={"VOILUTFunction": "SIGMOID"}), "VOI LUT"),
])
def test_refused_variants_name_the_file(tmp_path, pixels, kwargs, message):
    path = write_dicom(tmp_path / "bad.dcm", pixels, **kwargs)
    with pytest.raises(ValueError, match=f"bad.dcm.*{message}"):
        read_radiograph(path)


def test_linear_voi_lut_function_is_accepted(tmp_path, pixels):
    path = write_dicom(tmp_path / "lin.dcm", pixels, extra={"VOILUTFunction": "LINEAR"})
    assert read_radiograph(path)[0].shape == pixels.shape


def test_non_image_dicom(tmp_path, pixels):
    path = write_dicom(tmp_path / "img.dcm", pixels)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(tmp_path / "noimage.dcm")
    with pytest.raises(ValueError, match="noimage.dcm.*no PixelData"):
        read_radiograph(tmp_path / "noimage.dcm")


@pytest.mark.parametrize("content", [b"", b"not a dicom file at all", None])
def test_unreadable_and_truncated_files(tmp_path, pixels, content):
    path = tmp_path / "broken.dcm"
    if content is None:  # a real DICOM cut in the middle of its pixel data
        data = write_dicom(tmp_path / "whole.dcm", pixels).read_bytes()
        content = data[: len(data) - pixels.nbytes // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.dcm"):
        read_radiograph(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="absent.dcm"):
        read_radiograph(tmp_path / "absent.dcm")


def _with_raw_spacing(tmp_path, pixels, keyword, raw):
    """A DICOM whose spacing element holds `raw` exactly as written (malformed values included)."""
    from pydicom.dataelem import RawDataElement

    path = write_dicom(tmp_path / "img.dcm", pixels, spacing=None)
    ds = pydicom.dcmread(path)
    tag = pydicom.tag.Tag(pydicom.datadict.tag_for_keyword(keyword))
    value = raw.encode() + b" " * (len(raw) % 2)
    ds[tag] = RawDataElement(tag, "DS", len(value), value, 0, False, True)
    ds.save_as(tmp_path / "spacing.dcm")
    return tmp_path / "spacing.dcm"


@pytest.mark.parametrize("keyword, raw, cause", [
    ("ImagerPixelSpacing", "0.15", r"ImagerPixelSpacing holds 1 value"),
    ("PixelSpacing", "0,6669\\0,6669", "comma as decimal separator"),
    ("PixelSpacing", "0.65 mm\\0.65 mm", "unit or other text"),
])
def test_malformed_header_spacing_names_element_value_and_cause(tmp_path, pixels, keyword, raw, cause):
    path = _with_raw_spacing(tmp_path, pixels, keyword, raw)
    with pytest.raises(ValueError, match=f"spacing.dcm: unusable pixel spacing: .*{cause}.*manifest"):
        read_dicom(path)
    radiograph = read_dicom(path, spacing=0.5)  # a given spacing replaces the unusable one
    assert radiograph.spacing == (0.5, 0.5) and radiograph.spacing_source == "given"


def _with_voi_lut(tmp_path, pixels, lut, first=0, bits=16):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_dicom(tmp_path / "img.dcm", pixels)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(lut), first, bits])
    item.add_new("LUTData", "US", [int(v) for v in lut])
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(tmp_path / "voi.dcm")
    return tmp_path / "voi.dcm"


def test_voi_lut_sequence_is_applied(tmp_path, pixels):
    # a non-linear table (square root) over every stored value 0-4095
    lut = np.round(np.sqrt(np.arange(4096)) * 64).astype(np.uint16)
    path = _with_voi_lut(tmp_path, pixels, lut)
    image, _ = read_radiograph(path)
    np.testing.assert_array_equal(image, lut[pixels].astype(np.float32))


def test_broken_voi_lut_sequence_is_refused_with_the_file(tmp_path, pixels):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_dicom(tmp_path / "img.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.VOILUTSequence = Sequence([Dataset()])  # an item without its table
    ds.save_as(tmp_path / "badvoi.dcm")
    with pytest.raises(ValueError, match="badvoi.dcm: cannot apply its VOI LUT Sequence"):
        read_radiograph(tmp_path / "badvoi.dcm")
