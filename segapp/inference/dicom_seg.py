"""DICOM Segmentation (SEG) objects for DICOM inputs, made with highdicom.

A SEG is what a PACS or viewer wants beside a DICOM image: it carries the source's patient and
study, points back at the source SOP Instance (and, for a multi-frame source, at each frame) and
says which algorithm made it. :func:`write_seg` writes one per source file (one SEG frame per
source frame, BINARY, or FRACTIONAL when probabilities are given); :func:`seg_problem` says why a
source cannot get one, so the caller writes a CSV reason instead of an invalid SEG.

Three things highdicom 0.28 leaves to us, all checked with ``dciodvfy`` in the tests:

- it reads the Type 2 patient/study attributes from the source and raises AttributeError when
  one is absent: they are copied empty, which Type 2 allows;
- it never writes Patient Orientation (0020,0020), Type 2C in the General Image module and
  required when the SEG has no Plane Orientation (Patient), i.e. for sources without a frame
  of reference (secondary captures, photographs, endoscopy): copied from the source, empty if
  unknown;
- it makes no SEG of a multi-frame source without a frame of reference (ultrasound cine,
  endoscopy video, multi-frame secondary capture; its issue #284): highdicom makes frame 1
  over a single-frame stand-in of the source and :func:`_reference_frames` adds the rest, each
  SEG frame referencing its source frame (Referenced Frame Number), as the standard matches
  frames when there is no frame of reference.

A source with a frame of reference (CT/MR-like) is left to highdicom entirely. Every SEG is
checked to have one frame per source frame before it is written.

highdicom is imported when a SEG is made, not with this module (it costs ~0.4 s to import).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import RE_VALID_UID, generate_uid

import segapp
from segapp.io import atomic_write

SERIES_DESCRIPTION = "segapp lesion segmentation"
MANUFACTURER = "segapp"
MODEL_NAME = "segapp"
DEVICE_SERIAL_NUMBER = "0"  # software, no hardware serial; Type 1 in Enhanced General Equipment
CONTENT_LABEL = "SEGAPP_LESION"  # CS, at most 16 characters
SEGMENT_LABEL = "Lesion"
SERIES_NUMBER = 901
_UID_NAMESPACE = "segapp-dicom-seg-series"

# (keyword, name) of the Type 1 attributes a SEG copies or references: without them it is invalid.
_REQUIRED_UIDS = (
    ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
    ("SeriesInstanceUID", "Series Instance UID (0020,000E)"),
    ("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
    ("SOPClassUID", "SOP Class UID (0008,0016)"),
)
# Type 2 patient/study attributes highdicom reads from the source: copied empty when absent.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR")  # what segapp.io reads


class SegError(ValueError):
    """A SEG cannot be made for this source; the message is a one-line, CSV-ready reason."""


def job_series_uid(job_id: str | None) -> str:
    """The Series Instance UID of one prediction job's SEGs.

    A new random UID when ``job_id`` is None; otherwise derived from the job id (pydicom's
    ``generate_uid(entropy_srcs=...)``: a SHA-512 of the sources under pydicom's UID root), so
    every shard of a sharded job writes into one series and a re-run of the job writes the
    same one.
    """
    if job_id is None:
        return str(generate_uid())
    return str(generate_uid(entropy_srcs=[_UID_NAMESPACE, job_id]))


def _valid_uid(value: str) -> bool:
    """A DICOM UID: at most 64 characters, dot-separated numbers without leading zeros."""
    return len(value) <= 64 and RE_VALID_UID.match(value) is not None


def _uid_problem(ds: Dataset) -> str | None:
    for keyword, name in _REQUIRED_UIDS:
        value = str(ds.get(keyword, "") or "").strip()
        if not value:
            return f"source has no {name}; a DICOM SEG must copy it"
        if not _valid_uid(value):
            return f"source {name} is not a valid UID; a DICOM SEG must copy it"
    return None


def _geometry(ds: Dataset) -> tuple[int, int, int]:
    """``(frames, rows, columns)`` from the header; SegError when missing or unreadable."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as e:
        raise SegError(f"source has an unreadable Rows/Columns/NumberOfFrames ({e})") from e
    if rows < 1 or cols < 1 or frames < 1:
        raise SegError(f"source has no image size (Rows {rows}, Columns {cols}, frames {frames})")
    return frames, rows, cols


def _frames_problem(source: Dataset, frames: int) -> str | None:
    """Why the source's SOP Class rules out a SEG (unknown, or single-frame with frames), or None."""
    from highdicom.spatial import is_multiframe_image

    sop_class = str(source.SOPClassUID)
    try:
        multiframe = is_multiframe_image(source)
    except KeyError:
        return f"source SOP Class UID {sop_class} is not a standard image storage class; highdicom cannot reference it"
    if frames > 1 and not multiframe:
        return (
            f"source has {frames} frames but its SOP Class {sop_class} is single-frame; "
            "a SEG cannot reference its frames (fix: store it as a multi-frame class)"
        )
    return None


def seg_problem(source: Dataset) -> str | None:
    """Why a valid SEG cannot be made from ``source`` (its header), or None when it can.

    Checks what the SEG must copy or reference (Study/Series/SOP Instance UID, SOP Class UID,
    Rows/Columns), that the SOP Class is a standard image class that may have the frames the
    file has (a SEG frame references a source frame only in a multi-frame class), and the
    photometric interpretation (what segapp reads). The reason names attributes and the SOP
    Class, never patient or study values (no patient data in the CSV).
    """
    reason = _uid_problem(source)
    if reason:
        return reason
    try:
        frames, _, _ = _geometry(source)
    except SegError as e:
        return str(e)
    photometric = str(source.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric.startswith(_PHOTOMETRIC):
        return f"source PhotometricInterpretation {photometric or '(none)'} is not MONOCHROME1/2, RGB or YBR"
    return _frames_problem(source, frames)


def _read_source(path: Path) -> Dataset:
    """The source header (no pixel data), checked; SegError when a SEG cannot be made from it."""
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not path.suffix)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as e:
        raise SegError(f"source is not a readable DICOM file ({type(e).__name__})") from e
    reason = seg_problem(ds)
    if reason:
        raise SegError(reason)
    for keyword in _TYPE2_COPIED:  # Type 2: present, empty when unknown
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _stack(arrays: Sequence[np.ndarray], shape: tuple[int, int, int], what: str) -> np.ndarray:
    """``arrays`` (one ``H x W`` per source frame) as one ``frames x H x W`` array, checked."""
    frames, rows, cols = shape
    if len(arrays) != frames:
        raise SegError(f"{what}: expected one per source frame ({frames}), got {len(arrays)}")
    bad = [np.shape(a) for a in arrays if np.shape(a) != (rows, cols)]
    if bad:
        raise SegError(f"{what}: expected {rows} x {cols} (the source's Rows x Columns), got {bad[0]}")
    return np.stack([np.asarray(a) for a in arrays])


def _pixels(masks: Sequence[np.ndarray], probs: Sequence[np.ndarray] | None, shape: tuple[int, int, int]) -> np.ndarray:
    """The SEG's pixel array: bool masks (BINARY) or float32 probabilities in [0, 1] (FRACTIONAL)."""
    stacked = _stack(masks, shape, "masks").astype(bool)
    if probs is None:
        return stacked
    values = _stack(probs, shape, "probs").astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise SegError("probs: expected finite probabilities in [0, 1]; fix: pass the sigmoid output")
    return values


def _parameter(value: Any) -> str:
    """A value for AlgorithmParameters (``key=value`` pairs joined by commas): no ``,`` or ``=``."""
    return str(value).replace(",", ";").replace("=", ":")


def _algorithm(algorithm: Mapping[str, Any]) -> Any:
    """AlgorithmIdentificationSequence: family AI, name segapp, its version, the model's name/SHA-256."""
    from highdicom import AlgorithmIdentificationSequence
    from pydicom.sr.codedict import codes

    missing = [key for key in ("name", "sha256") if not str(algorithm.get(key, "") or "").strip()]
    if missing:
        raise SegError(f"algorithm: expected the model's name and sha256, missing {', '.join(missing)}")
    parameters = {"model": algorithm["name"], "sha256": algorithm["sha256"]}
    parameters |= {k: v for k, v in algorithm.items() if k not in ("name", "sha256")}
    return AlgorithmIdentificationSequence(
        name=MODEL_NAME,
        family=codes.DCM.ArtificialIntelligence,
        version=segapp.__version__,
        source=MANUFACTURER,
        parameters={str(k): _parameter(v) for k, v in parameters.items()},
    )


def _segment(algorithm: Mapping[str, Any]) -> Any:
    """The one segment: Lesion (SCT 52988006), category Morphologically Abnormal Structure (SCT 49755003)."""
    from highdicom.seg import SegmentAlgorithmTypeValues, SegmentDescription
    from pydicom.sr.codedict import codes

    return SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(algorithm),
    )


def study_series_uid(job_uid: str, study_uid: str) -> str:
    """The SEG series of one job within one study: a DICOM series belongs to exactly one study,
    and the SEG copies its source's study. One job UID for every study put the SEGs of all
    patients of a folder (and of every container run of the same model) into one series."""
    return str(generate_uid(entropy_srcs=[job_uid, study_uid]))


def _instance_number(source: Dataset) -> int:
    """The source's InstanceNumber (a 1-based position in its series), else 1: SEGs of one study's
    images then sort as their sources do, the same in every shard."""
    try:
        n = int(source.get("InstanceNumber") or 1)
    except (TypeError, ValueError):
        return 1
    return n if n >= 1 else 1


def _segmentation(source: Dataset, pixels: np.ndarray, series_uid: str, series_number: int, algorithm: Mapping) -> Any:
    """highdicom's Segmentation of ``pixels`` (``frames x H x W``) over ``source``, as it makes it;
    ``series_uid`` is the job's, made one per source study here."""
    from highdicom.seg import Segmentation

    seg_type = "BINARY" if pixels.dtype == bool else "FRACTIONAL"
    series_uid = study_series_uid(series_uid, str(source.StudyInstanceUID))
    return Segmentation(
        source_images=[source],
        pixel_array=pixels,
        segmentation_type=seg_type,
        segment_descriptions=[_segment(algorithm)],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=generate_uid(entropy_srcs=[series_uid, str(source.SOPInstanceUID), seg_type]),
        instance_number=_instance_number(source),
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=segapp.__version__,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label=CONTENT_LABEL,
        content_description=f"{SEGMENT_LABEL} by segapp {segapp.__version__}",
        series_description=SERIES_DESCRIPTION,
        omit_empty_frames=False,  # one SEG frame per source frame, empty or not
    )


def _by_reference(source: Dataset) -> bool:
    """Whether the source is a multi-frame class outside a coordinate system (ultrasound cine,
    endoscopy video, multi-frame secondary capture): SEG frames then match source frames by
    reference, which highdicom 0.28 does not do (its issue #284), so :func:`_build` does."""
    from highdicom.spatial import get_image_coordinate_system, is_multiframe_image

    return is_multiframe_image(source) and get_image_coordinate_system(source) is None


def _single_frame_proxy(source: Dataset) -> Dataset:
    """The source header as a single-frame Secondary Capture without geometry, for highdicom.

    highdicom reads a multi-frame class's geometry from functional groups these sources do not
    have; as a single-frame image it takes its plain path (references, no geometry). The class
    is restored in the SEG by :func:`_reference_frames`.
    """
    from pydicom.uid import SecondaryCaptureImageStorage

    proxy = copy.deepcopy(source)
    proxy.SOPClassUID = SecondaryCaptureImageStorage
    for keyword in ("NumberOfFrames", "FrameOfReferenceUID", "PositionReferenceIndicator"):
        if keyword in proxy:
            delattr(proxy, keyword)
    return proxy


def _restore_class(item: Dataset, source: Dataset) -> None:
    """Every reference to the source instance, at any depth, names the source's real SOP Class."""
    if item.get("ReferencedSOPInstanceUID") == source.SOPInstanceUID:
        item.ReferencedSOPClassUID = source.SOPClassUID
    for element in item:
        if element.VR == "SQ":
            for child in element.value:
                _restore_class(child, source)


def _encode(pixels: np.ndarray) -> bytes:
    """Pixel Data of all frames: bits packed across frames (BINARY) or 8-bit probabilities x 255."""
    from pydicom.pixels import pack_bits

    if pixels.dtype == bool:
        return pack_bits(pixels.astype(np.uint8), pad=True)
    data = np.around(pixels * 255.0).astype(np.uint8).tobytes()  # as highdicom quantises
    return data + b"\0" * (len(data) % 2)


def _reference_frames(seg: Dataset, pixels: np.ndarray, source: Dataset) -> None:
    """Turn highdicom's one-frame SEG over the proxy into one SEG frame per source frame.

    Without a frame of reference the standard matches SEG and source frames by reference
    (PS3.3 A.51.5.1): SEG frame k's Derivation Image Sequence names source frame k (Referenced
    Frame Number). The Multi-frame Dimension module gets a second index, the Temporal Position
    Index in the Frame Content Sequence (the source frame number), so no two frames share index
    values; the references are given back the source's SOP Class.
    """
    first = seg.PerFrameFunctionalGroupsSequence[0]
    items = []
    for k in range(pixels.shape[0]):
        item = copy.deepcopy(first)
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber = k + 1
        content = item.FrameContentSequence[0]
        content.DimensionIndexValues = [int(content.DimensionIndexValues), k + 1]
        content.TemporalPositionIndex = k + 1
        items.append(item)
    seg.PerFrameFunctionalGroupsSequence = items
    index = Dataset()
    index.DimensionOrganizationUID = seg.DimensionIndexSequence[0].DimensionOrganizationUID
    index.DimensionIndexPointer = 0x00209128  # Temporal Position Index
    index.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    index.DimensionDescriptionLabel = "Source frame"
    seg.DimensionIndexSequence.append(index)
    seg.NumberOfFrames = pixels.shape[0]
    seg.PixelData = _encode(pixels)
    _restore_class(seg, source)


def _has_plane_orientation(seg: Dataset) -> bool:
    groups = list(seg.get("SharedFunctionalGroupsSequence", [])) + list(seg.get("PerFrameFunctionalGroupsSequence", []))
    return any("PlaneOrientationSequence" in item for item in groups)


def _build(source: Dataset, pixels: np.ndarray, series_uid: str, series_number: int, algorithm: Mapping) -> Any:
    """The SEG of ``pixels`` (``frames x H x W``) over ``source``; SegError when it cannot be made."""
    try:
        by_reference = _by_reference(source)
        header, planes = (_single_frame_proxy(source), pixels[:1]) if by_reference else (source, pixels)
        seg = _segmentation(header, planes, series_uid, series_number, algorithm)
    except SegError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise SegError(f"highdicom cannot make a SEG from this source ({type(e).__name__}: {e})") from e
    if by_reference:
        _reference_frames(seg, pixels, source)
    if int(seg.get("NumberOfFrames", 0)) != pixels.shape[0]:  # never a SEG that silently dropped frames
        raise SegError(f"highdicom made {seg.get('NumberOfFrames')} SEG frames for {pixels.shape[0]} source frames")
    if not _has_plane_orientation(seg):  # General Image, Type 2C: needed without Plane Orientation (Patient)
        seg.PatientOrientation = source.get("PatientOrientation", None)
    return seg


def write_seg(
    source_path: Path,
    masks: list[np.ndarray],
    out_path: Path,
    *,
    probs: list[np.ndarray] | None = None,
    series_uid: str,
    series_number: int = SERIES_NUMBER,
    algorithm: dict,
) -> None:
    """Write the DICOM SEG of ``masks`` over the DICOM file ``source_path`` to ``out_path``.

    Args:
        source_path: The source DICOM (any extension or none); only its header is read.
        masks: One ``H x W`` bool mask per source frame, at the source's Rows x Columns
            (frame k of a multi-frame source is ``masks[k]``).
        out_path: The SEG file, written atomically (never a partial file).
        probs: Lesion probabilities in [0, 1], one per frame: the SEG is then FRACTIONAL
            (probability, 8 bits: max value 255, so within 1/255) and ``masks`` are only
            checked; else BINARY. A viewer thresholds a FRACTIONAL SEG itself: pass the run's
            threshold in ``algorithm`` to record it.
        series_uid: The job's UID (:func:`job_series_uid`); the SEG's Series Instance UID is
            derived from it and the source's Study Instance UID (:func:`study_series_uid`).
        series_number: The SEG series' number.
        algorithm: ``{"name": model name, "sha256": model SHA-256, ...}``; every item goes into
            AlgorithmParameters.

    Raises:
        SegError: the source is unreadable or lacks what a SEG must copy (:func:`seg_problem`),
            or the masks/probabilities do not match it. Nothing is written then.
    """
    source_path, out_path = Path(source_path), Path(out_path)
    if not _valid_uid(str(series_uid)):
        raise SegError(f"series_uid: expected a DICOM UID (digits and dots), got {series_uid!r}; fix: job_series_uid()")
    source = _read_source(source_path)
    pixels = _pixels(masks, probs, _geometry(source))
    seg = _build(source, pixels, series_uid, series_number, algorithm)
    with atomic_write(out_path, suffix=".dcm") as tmp:
        seg.save_as(tmp, enforce_file_format=True)
