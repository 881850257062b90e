"""Synthetic scenes with true captions: coloured shapes in known positions, drawn with Pillow.

Used by the demo, the tests and the benchmarks, so every size of project can be made in seconds
without downloading anything. The captions are true by construction ("a red circle above a blue
square"), which also gives the crowd simulator and training smoke tests a ground truth.
"""

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 38, 38),
    "green": (22, 163, 74),
    "blue": (37, 99, 235),
    "yellow": (234, 179, 8),
    "purple": (147, 51, 234),
    "orange": (234, 88, 12),
    "black": (17, 24, 39),
}
SHAPES = ("circle", "square", "triangle")
# relation -> (dx, dy) of the first shape relative to the second, in cells of a 2x2 layout
RELATIONS = {"above": (0, -1), "below": (0, 1), "left of": (-1, 0), "right of": (1, 0)}
INVERSE = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
BACKGROUNDS = {"white": (250, 250, 250), "grey": (200, 200, 205), "beige": (240, 228, 200)}


@dataclass(frozen=True)
class ShapeSpec:
    colour: str
    shape: str

    def __str__(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def with_article(self) -> str:
        return f"{'an' if self.colour[0] in 'aeiou' else 'a'} {self}"


@dataclass(frozen=True)
class Scene:
    first: ShapeSpec
    relation: str
    second: ShapeSpec
    background: str

    def captions(self) -> list[str]:
        """Several true descriptions of the same scene, as different annotators would write."""
        first, second = self.first.with_article, self.second.with_article
        return [
            f"{first} {self.relation} {second}",
            f"{second} {INVERSE[self.relation]} {first}",
            f"{first} and {second} on a {self.background} background",
        ]


def random_scene(rng: random.Random) -> Scene:
    first_colour, second_colour = rng.sample(sorted(COLOURS), 2)
    return Scene(
        first=ShapeSpec(first_colour, rng.choice(SHAPES)),
        relation=rng.choice(sorted(RELATIONS)),
        second=ShapeSpec(second_colour, rng.choice(SHAPES)),
        background=rng.choice(sorted(BACKGROUNDS)),
    )


def draw_scene(scene: Scene, *, size: int = 192, rng: random.Random | None = None) -> Image.Image:
    """Render a scene. Sizes, offsets and a soft background gradient vary at random, so that two
    scenes with the same layout are still different pictures (also to a perceptual hash, which
    sees brightness structure and not colour)."""
    rng = rng or random.Random(0)
    canvas = _gradient_background(BACKGROUNDS[scene.background], size=size, rng=rng)
    draw = ImageDraw.Draw(canvas)
    dx, dy = RELATIONS[scene.relation]
    cell = size // 2
    # Place the second shape, then the first one cell away in the named direction.
    if dx:
        second_cell = (0 if dx > 0 else 1, rng.randint(0, 1))
    else:
        second_cell = (rng.randint(0, 1), 0 if dy > 0 else 1)
    first_cell = (second_cell[0] + dx, second_cell[1] + dy)
    for spec, (cx, cy) in ((scene.first, first_cell), (scene.second, second_cell)):
        side = int(cell * rng.uniform(0.45, 0.75))
        # Centres stay within a tenth of a cell of the cell's centre: the relation stays true.
        centre_x = cx * cell + cell // 2 + rng.randint(-cell // 10, cell // 10)
        centre_y = cy * cell + cell // 2 + rng.randint(-cell // 10, cell // 10)
        box = (
            centre_x - side // 2,
            centre_y - side // 2,
            centre_x + side // 2,
            centre_y + side // 2,
        )
        _draw_shape(draw, spec, box)
    return canvas


def _gradient_background(
    colour: tuple[int, int, int], *, size: int, rng: random.Random
) -> Image.Image:
    strength = rng.uniform(20, 60)
    horizontal = rng.random() < 0.5
    ramp = Image.linear_gradient("L").resize((size, size))
    if horizontal:
        ramp = ramp.rotate(90)
    if rng.random() < 0.5:
        ramp = ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    base = Image.new("RGB", (size, size), colour)
    darker = Image.new("RGB", (size, size), tuple(max(0, int(c - strength)) for c in colour))
    canvas = Image.composite(darker, base, ramp)
    # A few faint, large patches: low-frequency structure unique to each picture.
    draw = ImageDraw.Draw(canvas)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        radius = rng.randint(size // 6, size // 3)
        shade = rng.choice((-1, 1)) * rng.randint(25, 55)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            fill=tuple(min(255, max(0, c + shade)) for c in colour),
        )
    return canvas


def scene_jpeg(scene: Scene, *, size: int = 192, rng: random.Random | None = None) -> bytes:
    buffer = io.BytesIO()
    draw_scene(scene, size=size, rng=rng).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def generate(count: int, *, seed: int = 0, size: int = 192) -> Iterator[tuple[Scene, bytes]]:
    """count scenes with their JPEG bytes, reproducible from the seed."""
    rng = random.Random(seed)
    for _ in range(count):
        scene = random_scene(rng)
        yield scene, scene_jpeg(scene, size=size, rng=rng)


def _draw_shape(draw: ImageDraw.ImageDraw, spec: ShapeSpec, box: tuple[int, int, int, int]) -> None:
    fill = COLOURS[spec.colour]
    if spec.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif spec.shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        left, top, right, bottom = box
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=fill)
