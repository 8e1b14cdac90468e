"""The dataset's fingerprint for planning: the numbers of ``segapp-data check``, no second read.

The check (:func:`segapp.data.check.check_dataset`, cached in the user cache folder) reads every
image and mask once; the planner needs only its summary: how many pairs, how large and how
square the images are, grey or colour, how large the lesions are and how many masks are empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from segapp.data.check import CheckReport, check_dataset
from segapp.data.errors import DataError
from segapp.data.layouts import Discovery, discover
from segapp.data.splits import data_fingerprint


@dataclass(frozen=True)
class Fingerprint:
    """What the rules read about a dataset (all fractions on 0-1).

    Attributes:
        root: The dataset folder as given.
        layout: How images and masks were paired.
        pairs: Image/mask pairs found.
        short_side: Median shorter side of the images, pixels.
        aspect: Median long/short side ratio (1 = square).
        grey_share: Share of images that are grey (one channel, or equal colour channels).
        lesion_median: Median lesion share of the frame (non-empty masks).
        lesion_p10: 10th percentile of it: the small lesions the size rule serves.
        small_share: Share of non-empty masks whose lesion is under 2 % of the frame.
        empty_share: Share of pairs whose mask is empty.
        data_fingerprint: The check's content fingerprint (changes with the files).
    """

    root: str
    layout: str
    pairs: int
    short_side: int
    aspect: float
    grey_share: float
    lesion_median: float
    lesion_p10: float
    small_share: float
    empty_share: float
    data_fingerprint: str = ""

    @property
    def grey(self) -> bool:
        """Grey when nearly every image is (90 %): a few colour files do not make a colour set."""
        return self.grey_share >= 0.9

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for the console."""
        kind = "grey" if self.grey else "colour"
        return (
            f"{self.pairs} pairs, {kind}, short side {self.short_side} px (aspect {self.aspect:.2f}), lesions "
            f"median {self.lesion_median:.1%} / p10 {self.lesion_p10:.1%} of the frame, {self.small_share:.0%} "
            f"under 2 %, {self.empty_share:.0%} empty"
        )


def from_report(rep: CheckReport) -> Fingerprint:
    """The fingerprint of a check report (raises :class:`DataError` when it holds no lesion at all)."""
    les = rep.lesions or {}
    if not les.get("nonempty"):
        raise DataError(
            f"{rep.root}: expected masks with lesions to plan from, got {rep.pairs} pairs with none; "
            "fix: check the mask folder and data.mask_threshold (`segapp-data check` shows the values)"
        )
    colour = rep.colour or {}
    n_img = max(sum(colour.values()), 1)
    return Fingerprint(
        root=str(rep.root),
        layout=rep.layout,
        pairs=rep.pairs,
        short_side=int(rep.sizes.get("median_short_side", 0)),
        aspect=float(rep.sizes.get("aspect_median", 1.0)),
        grey_share=colour.get("grey", 0) / n_img,
        lesion_median=float(les["median"]),
        lesion_p10=float(les["p10"]),
        small_share=float(les["under_2pct"]),
        empty_share=rep.empty_masks / max(rep.pairs, 1),
        data_fingerprint=rep.fingerprint,
    )


def fingerprint_folder(
    root: str,
    layout: str = "auto",
    threshold: float = 127,
    foreground_labels: list[int] | None = None,
    use_cache: bool = True,
    **discover_kw,
) -> tuple[Fingerprint, CheckReport, Discovery]:
    """Discover ``root``, run (or read the cached) check and summarise it (also returns the check and the pairs).

    Args:
        root: Dataset folder or CSV manifest (``data.root``).
        layout: ``data.layout``.
        threshold: ``data.mask_threshold``.
        foreground_labels: ``data.foreground_labels``.
        use_cache: Read and write the check's cache entry.
        **discover_kw: ``mask_suffix``, ``mask_dir``, ``csv_name`` as in the data module.

    Raises:
        DataError: when the folder has no pairs, the check finds errors, or no mask has a lesion.
    """
    disc = discover(root, layout, **discover_kw)
    rep = check_dataset(disc, threshold, data_fingerprint(disc), use_cache, foreground_labels=foreground_labels)
    if rep.errors:
        raise DataError(f"{root}: {rep.errors[0]} (run `segapp-data check {root}` for the full report)")
    return from_report(rep), rep, disc


def fingerprint_pairs(
    disc: Discovery, pairs: list, threshold: float = 127, foreground_labels: list[int] | None = None
) -> Fingerprint:
    """The fingerprint of some of ``disc``'s pairs (the training and validation ones: a test split's
    lesions must not set the image size of the plan it is kept to judge)."""
    seen = replace(disc, pairs=list(pairs), images_without_mask=[], masks_without_image=[], missing=[])
    return from_report(check_dataset(seen, threshold, data_fingerprint(seen), foreground_labels=foreground_labels))
