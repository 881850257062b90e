"""Photo-like test pictures and altered copies of them, drawn in memory with Pillow."""

import io
import random

from PIL import Image as PILImage
from PIL import ImageDraw, ImageEnhance

from datasets.ingest.services.uploads import Provenance, image_ingest
from datasets.models import Image, Project, Source


def picture(*, seed: int, size: tuple[int, int] = (320, 240)) -> PILImage.Image:
    """A gradient with overlapping shapes: enough structure for perceptual hashes to tell apart."""
    rng = random.Random(seed)
    width, height = size
    base = PILImage.linear_gradient("L").resize(size).rotate(rng.choice([0, 90, 180, 270]))
    tint = tuple(rng.randrange(60, 200) for _ in range(3))
    canvas = PILImage.merge("RGB", [base.point(lambda v, t=t: (v * t) // 255) for t in tint])
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return canvas


def jpeg(image: PILImage.Image, *, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def resized(image: PILImage.Image) -> PILImage.Image:
    return image.resize((image.width * 2 // 3, image.height * 2 // 3), PILImage.Resampling.LANCZOS)


def brighter(image: PILImage.Image) -> PILImage.Image:
    return ImageEnhance.Brightness(image).enhance(1.2)


VARIANTS = {
    "original": lambda p: jpeg(p),
    "resized": lambda p: jpeg(resized(p)),
    "recompressed": lambda p: jpeg(p, quality=35),
    "brighter": lambda p: jpeg(brighter(p)),
}


def ingest(*, project: Project, data: bytes, name: str) -> Image:
    result = image_ingest(
        project=project, data=data, provenance=Provenance(source=Source.UPLOAD, original_name=name)
    )
    assert result.status == "accepted", result
    return Image.objects.get(pk=result.image_id)


def variant(*, project: Project, seed: int, kind: str = "original") -> Image:
    return ingest(
        project=project, data=VARIANTS[kind](picture(seed=seed)), name=f"{seed}-{kind}.jpg"
    )
