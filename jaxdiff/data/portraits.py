"""The embedded dataset: procedural portraits that mirror the six SD-2.1 prompts of jaxdiff/data/classes.py.

    python -m jaxdiff.portraits --out data/portraits [--per-class 1000] [--size 32] [--seed 0]

Gender is hair (man: short black hair; woman: long black hair past the shoulders). Profession is
clothes and scene: person = gray shirt on a blurred neutral background, nurse = blue V-neck
scrubs against a hospital wall, philosopher = tweed jacket in front of library shelves. Every
image varies skin tone, position, size, lighting and background texture. Images are drawn at
`supersample` times the size and downsampled, so edges are smooth. The same seed gives the same
bytes: each image's generator is seeded from (seed, class, index).
"""


import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.data.classes import CLASS_NAMES, CLASSES
from jaxdiff.common.errors import UserError

# Colours (RGB). Skin tones span light to medium-light: the prompts ask for Caucasian/European.
_SKIN_LIGHT, _SKIN_DARK = np.array([246, 214, 190]), np.array([200, 150, 112])
_HAIR_BLACK = np.array([22, 20, 22])
_SHIRT_GRAY = np.array([128, 130, 134])
_SCRUBS_BLUE = np.array([40, 92, 176])
_TWEED_BROWN = np.array([120, 88, 58])
_BOOK_COLOURS = np.array([[128, 34, 30], [40, 80, 48], [32, 44, 92], [160, 120, 40], [90, 40, 70], [70, 60, 50]])


def _draw_neutral_background(rng: np.random.Generator, s: int) -> Image.Image:
    """A blurred studio backdrop: a smooth radial gradient of a neutral tone with soft blotches."""
    base = rng.uniform(150, 205) + rng.uniform(-8, 8, size=3)
    yy, xx = np.mgrid[0:s, 0:s] / s
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    radial = 1.0 - 0.35 * np.hypot(xx - cx, yy - cy)
    blotches = rng.normal(0, 1, size=(6, 6))
    blotches = np.asarray(Image.fromarray(blotches.astype(np.float32)).resize((s, s), Image.BICUBIC))
    pixels = base[None, None, :] * radial[..., None] + rng.uniform(3, 9) * blotches[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _draw_hospital_background(rng: np.random.Generator, s: int) -> Image.Image:
    """A pale mint hospital wall with a handrail band, a door or window frame and a ceiling light."""
    wall = np.array([196, 226, 222]) + rng.uniform(-14, 14, size=3)
    image = Image.new("RGB", (s, s), tuple(int(v) for v in wall))
    draw = ImageDraw.Draw(image)
    lower = wall * rng.uniform(0.72, 0.82)
    rail_y = rng.uniform(0.60, 0.70) * s
    draw.rectangle([0, rail_y, s, s], fill=tuple(int(v) for v in lower))
    draw.rectangle([0, rail_y - 0.03 * s, s, rail_y], fill=(236, 240, 240))
    frame_x = rng.choice([rng.uniform(0.0, 0.12), rng.uniform(0.78, 0.9)]) * s
    frame_w = rng.uniform(0.18, 0.26) * s
    inner = (150, 190, 210) if rng.random() < 0.5 else (226, 236, 240)  # window or white door
    draw.rectangle([frame_x, 0.12 * s, frame_x + frame_w, 0.58 * s], fill=(240, 244, 244))
    draw.rectangle([frame_x + 0.02 * s, 0.14 * s, frame_x + frame_w - 0.02 * s, 0.56 * s], fill=inner)
    draw.rectangle([0.25 * s, 0, 0.75 * s, 0.04 * s], fill=(250, 252, 250))  # ceiling light strip
    return image.filter(ImageFilter.GaussianBlur(radius=s / 96))


def _draw_library_background(rng: np.random.Generator, s: int) -> Image.Image:
    """Dark wooden shelves filled with rows of book spines in muted colours, slightly blurred."""
    wood = np.array([92, 60, 36]) + rng.uniform(-12, 12, size=3)
    image = Image.new("RGB", (s, s), tuple(int(v) for v in wood * 0.6))
    draw = ImageDraw.Draw(image)
    shelf_height = rng.uniform(0.22, 0.30) * s
    y = -rng.uniform(0, shelf_height)
    while y < s:
        x = -rng.uniform(0, 0.05) * s
        while x < s:
            width = rng.uniform(0.025, 0.06) * s
            colour = _BOOK_COLOURS[rng.integers(len(_BOOK_COLOURS))] * rng.uniform(0.7, 1.15)
            top = y + rng.uniform(0.08, 0.3) * shelf_height
            draw.rectangle([x, top, x + width, y + shelf_height * 0.88], fill=tuple(int(min(v, 255)) for v in colour))
            x += width + rng.uniform(0, 0.006) * s
        draw.rectangle([0, y + shelf_height * 0.88, s, y + shelf_height], fill=tuple(int(v) for v in wood))
        y += shelf_height
    return image.filter(ImageFilter.GaussianBlur(radius=s / 80))


def _tweed_texture(rng: np.random.Generator, s: int) -> Image.Image:
    """Brown tweed: the base colour with a fine speckle and a faint herringbone of diagonals."""
    base = _TWEED_BROWN * rng.uniform(0.85, 1.15)
    speckle = rng.normal(0, 14, size=(s, s, 1))
    yy, xx = np.mgrid[0:s, 0:s]
    weave = 7 * np.sign(np.sin((xx + yy * np.sign(np.sin(xx / (s / 24)))) / (s / 64)))[..., None]
    return Image.fromarray(np.clip(base + speckle + weave, 0, 255).astype(np.uint8))


def draw_portrait(class_name: str, rng: np.random.Generator, size: int = 32, supersample: int = 4) -> np.ndarray:
    """One procedural portrait of `class_name` as a uint8 (size, size, 3) array."""
    gender, profession = CLASSES[class_name].words
    s = size * supersample
    background = {
        "person": _draw_neutral_background,
        "nurse": _draw_hospital_background,
        "philosopher": _draw_library_background,
    }[profession]
    image = background(rng, s)
    draw = ImageDraw.Draw(image)

    scale = rng.uniform(0.88, 1.1)
    cx = s * (0.5 + rng.uniform(-0.07, 0.07))
    head_cy = s * (0.40 + rng.uniform(-0.04, 0.04))
    head_rx, head_ry = 0.13 * s * scale, 0.165 * s * scale
    skin = _SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT)
    skin_fill = tuple(int(v) for v in skin)
    hair = tuple(int(v) for v in np.clip(_HAIR_BLACK + rng.uniform(-8, 18), 0, 255))

    # Long hair falls behind the head and over the shoulders, so it is drawn before the body.
    shoulder_y = head_cy + 1.75 * head_ry
    if gender == "woman":
        length = rng.uniform(0.95, 1.25)
        hair_bottom = shoulder_y + length * 0.55 * head_ry
        draw.rounded_rectangle(
            [cx - 1.45 * head_rx, head_cy - 0.6 * head_ry, cx + 1.45 * head_rx, hair_bottom],
            radius=0.9 * head_rx,
            fill=hair,
        )

    # Torso: shoulders as a wide rounded block reaching the bottom edge.
    torso_w = rng.uniform(0.70, 0.82) * s * scale
    torso = [cx - torso_w / 2, shoulder_y, cx + torso_w / 2, s * 1.3]
    neck = [cx - 0.45 * head_rx, head_cy + 0.6 * head_ry, cx + 0.45 * head_rx, shoulder_y + 0.3 * head_ry]
    draw.rectangle(neck, fill=tuple(int(v) for v in skin * 0.9))
    if profession == "person":
        shirt = tuple(int(v) for v in _SHIRT_GRAY * rng.uniform(0.85, 1.15))
        draw.rounded_rectangle(torso, radius=0.12 * s, fill=shirt)
        draw.ellipse([cx - 0.5 * head_rx, shoulder_y - 0.12 * head_ry, cx + 0.5 * head_rx, shoulder_y + 0.35 * head_ry], fill=tuple(int(v) for v in skin * 0.9))
        draw.arc([cx - 0.55 * head_rx, shoulder_y - 0.15 * head_ry, cx + 0.55 * head_rx, shoulder_y + 0.4 * head_ry], 0, 180, fill=tuple(int(v * 0.75) for v in shirt), width=max(1, s // 64))
    elif profession == "nurse":
        scrubs = tuple(int(v) for v in np.clip(_SCRUBS_BLUE * rng.uniform(0.85, 1.15), 0, 255))
        draw.rounded_rectangle(torso, radius=0.12 * s, fill=scrubs)
        v_depth = shoulder_y + rng.uniform(0.55, 0.75) * head_ry
        draw.polygon([(cx - 0.55 * head_rx, shoulder_y), (cx + 0.55 * head_rx, shoulder_y), (cx, v_depth)], fill=tuple(int(v) for v in skin * 0.9))
        pocket_x = cx + torso_w * 0.18
        draw.rectangle([pocket_x, v_depth + 0.1 * s, pocket_x + 0.09 * s, v_depth + 0.18 * s], outline=tuple(int(v * 0.75) for v in scrubs), width=max(1, s // 64))
    else:  # philosopher: tweed jacket, dark lapels, light shirt in the V
        mask = Image.new("L", (s, s), 0)
        ImageDraw.Draw(mask).rounded_rectangle(torso, radius=0.12 * s, fill=255)
        image.paste(_tweed_texture(rng, s), (0, 0), mask)
        draw = ImageDraw.Draw(image)
        v_depth = shoulder_y + rng.uniform(1.1, 1.5) * head_ry
        draw.polygon([(cx - 0.6 * head_rx, shoulder_y), (cx + 0.6 * head_rx, shoulder_y), (cx, v_depth)], fill=(232, 228, 218))
        lapel = tuple(int(v * 0.6) for v in _TWEED_BROWN)
        for side in (-1, 1):
            draw.polygon([(cx + side * 0.6 * head_rx, shoulder_y), (cx + side * 1.05 * head_rx, shoulder_y + 0.2 * head_ry), (cx, v_depth)], fill=lapel)

    # Head, then hair on top of it, then a hint of eyes and mouth.
    draw.ellipse([cx - head_rx, head_cy - head_ry, cx + head_rx, head_cy + head_ry], fill=skin_fill)
    if gender == "man":
        # Short hair: a cap over the crown, ending above the forehead, with short sideburns.
        top = head_cy - head_ry * rng.uniform(1.05, 1.15)
        draw.chord([cx - 1.04 * head_rx, top, cx + 1.04 * head_rx, head_cy + 0.5 * head_ry], 180, 360, fill=hair)
        for side in (-1, 1):
            draw.rectangle([cx + side * 1.02 * head_rx - (0.16 * head_rx if side > 0 else 0), head_cy - 0.1 * head_ry,
                            cx + side * 1.02 * head_rx + (0.16 * head_rx if side < 0 else 0), head_cy + 0.15 * head_ry], fill=hair)
    else:
        # Long hair: a fuller crown with a fringe, framing the face down the sides.
        draw.chord([cx - 1.15 * head_rx, head_cy - 1.18 * head_ry, cx + 1.15 * head_rx, head_cy + 0.4 * head_ry], 180, 360, fill=hair)
        for side in (-1, 1):
            x0 = cx + side * 1.15 * head_rx
            x1 = cx + side * 0.78 * head_rx
            draw.rectangle([min(x0, x1), head_cy - 0.4 * head_ry, max(x0, x1), head_cy + 1.3 * head_ry], fill=hair)
    eye_y = head_cy + 0.05 * head_ry
    eye_r = max(1.0, 0.07 * head_rx)
    for side in (-1, 1):
        ex = cx + side * 0.38 * head_rx
        draw.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=(40, 32, 30))
    draw.line([cx - 0.25 * head_rx, head_cy + 0.5 * head_ry, cx + 0.25 * head_rx, head_cy + 0.5 * head_ry], fill=(150, 80, 75), width=max(1, s // 64))

    # Lighting: overall exposure, a soft left/right gradient and a colour temperature tint.
    pixels = np.asarray(image, np.float32)
    xx = np.linspace(-1, 1, s)[None, :, None]
    gradient = 1.0 + rng.uniform(-0.18, 0.18) * xx
    tint = 1.0 + rng.uniform(-0.05, 0.05, size=3)
    pixels = pixels * rng.uniform(0.8, 1.12) * gradient * tint
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((size, size), Image.LANCZOS), np.uint8)


def image_seed(seed: int, class_index: int, index: int) -> int:
    """The per-image seed stored in the record: remakes that image alone with `draw_portrait`."""
    return int(np.random.SeedSequence([seed, class_index, index]).generate_state(1, np.uint32)[0])


def class_images(class_name: str, start: int, count: int, size: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """Images start..start+count-1 of a class with their per-image seeds."""
    class_index = CLASS_NAMES.index(class_name)
    out = []
    for index in range(start, start + count):
        per_image_seed = image_seed(seed, class_index, index)
        out.append((draw_portrait(class_name, np.random.default_rng(per_image_seed), size), per_image_seed))
    return out


MANIFEST = "manifest.json"  # in the dataset directory: how it was drawn
BALANCED = {"person": 0.5, "nurse": 0.5, "philosopher": 0.5}  # the share of women per profession word


def woman_shares(woman_share: Mapping[str, float] | None) -> dict[str, float]:
    """Every profession's share of women: those given, the rest balanced."""
    return {**BALANCED, **(woman_share or {})}


def class_counts(per_class: int, woman_share: Mapping[str, float] | None = None) -> dict[str, int]:
    """Images per class: each profession keeps 2 x per_class images, of which `woman_share[profession]` are women.

    Balanced (every share 0.5, the default) gives per_class for every class; the positive control of the
    arms study draws nurse 60% and philosopher 40% women with the same total per profession."""
    shares = woman_shares(woman_share)
    unknown = sorted(set(shares) - set(BALANCED))
    if unknown or not all(0.0 < shares[p] < 1.0 for p in BALANCED):
        raise UserError(f"portraits.woman_share={dict(woman_share or {})}: give a share strictly between 0 and 1 for "
                        f"some of {', '.join(BALANCED)}")
    counts = {}
    for name in CLASS_NAMES:
        gender, profession = CLASSES[name].words
        women = int(round(2 * per_class * shares[profession]))
        counts[name] = women if gender == "woman" else 2 * per_class - women
    return counts


def dataset_suffix(woman_share: Mapping[str, float] | None) -> str:
    """How a dataset directory is named by its shares: '' when balanced, '-nurse60-philosopher40' otherwise."""
    shares = woman_shares(woman_share)
    return "".join(f"-{p}{100 * shares[p]:g}" for p in BALANCED if shares[p] != BALANCED[p])


def _interleaved(by_class: dict[str, list]) -> list[tuple]:
    """(class, *item) rows spread evenly over the classes in proportion to their counts (a plain round-robin
    when they are equal), so every shard, and every process's share of it, has the dataset's class mix."""
    rows = [((i + 0.5) / len(items), order, name, *item)
            for order, (name, items) in enumerate(by_class.items()) for i, item in enumerate(items)]
    return [row[2:] for row in sorted(rows, key=lambda row: row[:2])]


def write_dataset(out: str, per_class: int, size: int, seed: int, val_fraction: float,
                  images_per_shard: int = 1024, contact_columns: int = 12,
                  woman_share: Mapping[str, float] | None = None) -> dict[str, dict[str, int]]:
    """Draws every split into a new dataset directory at `out` (atomically) and its contact sheet.

    Returns each class's images per split; `woman_share` (per profession word) changes the gender mix."""
    from jaxdiff.data import schema

    per_class_counts = class_counts(per_class, woman_share)
    split_counts = {name: schema.split_counts(count, val_fraction) for name, count in per_class_counts.items()}
    with files.atomic_dir(out) as tmp:
        sheet_rows = []
        for split in schema.SPLITS:
            by_class = {}
            for name in CLASS_NAMES:
                first_index = 0 if split == "train" else split_counts[name]["train"]
                by_class[name] = class_images(name, first_index, split_counts[name][split], size, seed)
            if split == "train":
                sheet_rows = [[img for img, _ in by_class[name][:contact_columns]] for name in CLASS_NAMES]
            ordered = _interleaved(by_class)
            num_shards = max(1, -(-len(ordered) // images_per_shard))
            bounds = np.linspace(0, len(ordered), num_shards + 1).round().astype(int)
            for shard in range(num_shards):
                chunk = ordered[bounds[shard]:bounds[shard + 1]]  # contiguous: keeps the class mix, like any even split
                schema.write_shard(
                    tmp,
                    schema.shard_filename("portraits", split, shard, num_shards),
                    (schema.make_example(img, name, s, "portraits") for name, img, s in chunk),
                )
        shares = woman_shares(woman_share)
        schema.write_metadata(tmp, description=f"jaxdiff procedural portraits: per_class={per_class} size={size} "
                              f"seed={seed} val_fraction={val_fraction} woman_share={shares}")
        files.write_json(os.path.join(tmp, MANIFEST), {
            "generator": "jaxdiff.portraits", "per_class": per_class, "size": size, "seed": seed,
            "val_fraction": val_fraction, "woman_share": shares, "counts_by_class": split_counts,
            "classes": list(CLASS_NAMES),
        })
        write_contact_sheet(os.path.join(tmp, "contact_sheet.png"), sheet_rows)
    return split_counts


def woman_share_of(data_dir: str) -> dict[str, float]:
    """The per-profession share of women a portraits dataset was drawn with (balanced if its manifest predates it)."""
    manifest = files.read_json(os.path.join(data_dir, MANIFEST))
    return woman_shares(manifest.get("woman_share"))


def write_contact_sheet(path: str, rows: list[list[np.ndarray]], scale: int = 3) -> None:
    """A PNG with one row per class (in CLASS_NAMES order), labelled on the left."""
    images = np.stack([img for row in rows for img in row])
    grid = files.image_grid(images, ncols=len(rows[0]))
    grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST))
    label_width = 90
    canvas = Image.new("RGB", (grid.shape[1] + label_width, grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = grid.shape[0] / len(rows)
    for i, name in enumerate(CLASS_NAMES):
        draw.text((4, i * row_height + row_height / 2 - 6), name, fill=(0, 0, 0))
    files.save_png(path, np.asarray(canvas))


def parse_woman_share(text: str) -> dict[str, float]:
    """'nurse=0.6,philosopher=0.4' -> {'nurse': 0.6, 'philosopher': 0.4}; a malformed one is a UserError."""
    shares = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        try:
            shares[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--woman-share {text!r}: expected PROFESSION=SHARE,..., e.g. nurse=0.6,philosopher=0.4") from None
    class_counts(1, shares)  # an unknown profession or a share outside (0, 1) is said here
    return shares


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.portraits`."""
    absl_flags.DEFINE_string("out", None, "dataset directory to create", flag_values=values)
    absl_flags.DEFINE_integer("per-class", 1000, "images per class, both splits together", flag_values=values)
    absl_flags.DEFINE_integer("size", 32, "image height and width in pixels", flag_values=values)
    absl_flags.DEFINE_integer("seed", 0, "the dataset's seed; the same seed gives the same bytes", flag_values=values)
    absl_flags.DEFINE_float("val-fraction", 0.1, "share of each class held out as `validation`", flag_values=values)
    absl_flags.DEFINE_string("woman-share", "", "PROFESSION=SHARE,...: share of women per profession word, e.g. "
                             "nurse=0.6,philosopher=0.4 (default: 0.5 each)", flag_values=values)
    absl_flags.DEFINE_bool("overwrite", False, "replace an existing directory at --out", flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, required=["out"], doc=__doc__)
    woman_share = parse_woman_share(args.woman_share)
    if args.per_class < 2 or args.size < 8:
        raise UserError(f"--per-class must be at least 2 and --size at least 8 (got {args.per_class}, {args.size})")
    if os.path.exists(args.out) and not args.overwrite:
        raise UserError(f"{args.out!r} already exists; pass --overwrite to replace it or pick another --out")
    counts = write_dataset(args.out, args.per_class, args.size, args.seed, args.val_fraction, woman_share=woman_share)
    mix = ", ".join(f"{name} {sum(c.values())}" for name, c in counts.items())
    print(f"wrote {sum(sum(c.values()) for c in counts.values())} images ({mix}; {args.size}x{args.size}) to {args.out}; "
          f"contact sheet: {os.path.join(args.out, 'contact_sheet.png')}")

