"""SynDigits-like images: digits rendered from the TrueType fonts that ship inside matplotlib.

Each image is one digit (the label) drawn in a random font at a random size, with optional
neighbouring distractor digits cut off at the borders (house-number style), rotated,
shifted, blurred, coloured with random foreground/background colours of sufficient
contrast, plus mild pixel noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Fonts in matplotlib's ``fonts/ttf`` folder whose digits are ordinary lining figures
# (the *Display, symbol, math-italic and LastResort fonts lack usable digits).
DIGIT_FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)
_CANVAS = 64  # digits are drawn at 2x and box-filtered down, for antialiasing
_MIN_LUMA_CONTRAST = 0.35
_NEIGHBOUR_PROBABILITY = 0.35
_LUMA = np.array([0.299, 0.587, 0.114])


def matplotlib_digit_fonts() -> list[Path]:
    """Paths of the usable digit fonts shipped with the installed matplotlib (may be fewer
    than :data:`DIGIT_FONT_FILES` on unusual installs).

    Raises:
        RuntimeError: none of them exists.
    """
    import matplotlib

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = [font_dir / name for name in DIGIT_FONT_FILES if (font_dir / name).is_file()]
    if not fonts:
        raise RuntimeError(f"no TrueType digit fonts found in {font_dir}")
    return fonts


def _render_mask(
    label: int,
    font: ImageFont.FreeTypeFont,
    rng: np.random.Generator,
    size: int,
) -> np.ndarray:
    """One (size, size) float32 coverage mask in [0, 1] of digit ``label`` plus distractors."""
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    cx = _CANVAS / 2 + rng.uniform(-5.0, 5.0)
    cy = _CANVAS / 2 + rng.uniform(-5.0, 5.0)
    draw.text((cx, cy), str(label), fill=255, font=font, anchor="mm")
    if rng.random() < _NEIGHBOUR_PROBABILITY:  # neighbours on both sides, mostly outside the frame
        gap = font.getlength(str(label)) * rng.uniform(1.15, 1.45)
        for side in (-1, 1):
            neighbour = str(int(rng.integers(10)))
            draw.text((cx + side * gap, cy), neighbour, fill=255, font=font, anchor="mm")
    angle = float(rng.uniform(-15.0, 15.0))
    canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    small = canvas.resize((size, size), Image.Resampling.BOX)
    radius = float(rng.uniform(0.0, 1.0))
    if radius > 0.1:
        small = small.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(small, dtype=np.float32) / 255.0


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) RGB in [0, 1] whose luma differs by at least 0.35."""
    background = rng.uniform(0.0, 1.0, 3)
    for _ in range(100):
        foreground = rng.uniform(0.0, 1.0, 3)
        if abs(float((foreground - background) @ _LUMA)) >= _MIN_LUMA_CONTRAST:
            return foreground, background
    return 1.0 - background, background  # luma contrast |1 - 2 luma(bg)|, rarely needed


def render_font_digits(labels: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render one synthetic digit image per label.

    Args:
        labels: (N,) int digit classes in 0..9.
        rng: the only source of randomness (fonts, sizes, offsets, rotation, blur, colours).
        size: output height and width in pixels.

    Returns:
        (N, 3, size, size) float32 RGB images in [0, 1].
    """
    fonts = matplotlib_digit_fonts()
    loaded: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    images = np.empty((len(labels), 3, size, size), dtype=np.float32)
    for i, label in enumerate(np.asarray(labels)):
        key = (int(rng.integers(len(fonts))), int(rng.integers(44, 60)))
        if key not in loaded:
            loaded[key] = ImageFont.truetype(str(fonts[key[0]]), key[1])
        mask = _render_mask(int(label), loaded[key], rng, size)
        foreground, background = _contrasting_colours(rng)
        images[i] = background[:, None, None] + (foreground - background)[:, None, None] * mask
    noise_std = rng.uniform(0.0, 0.04, size=(len(labels), 1, 1, 1)).astype(np.float32)
    images += noise_std * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0, out=images)
