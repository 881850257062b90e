"""A corpus of odd inputs, built here, for the invariant that every row read ends in one outcome.

Each case is one input a careless or hostile person could send: a manifest (CSV/TSV/JSONL) or a
COCO file with the images it names, or an upload of files and zips. ``rows`` is how many rows the
input holds, counted by construction (data lines, COCO entries, files and zip members), and
``wheres`` the locator each row must be reported at when the case lists them.
"""

import io
import json
import struct
import zipfile
from dataclasses import dataclass, field

from PIL import Image as PILImage
from PIL import PngImagePlugin

from tests.factories import image_bytes

# Tests run with these limits so the oversize cases stay small.
MAX_IMAGE_BYTES = 300_000
ZIP_MAX_FILES = 40


@dataclass
class Case:
    name: str
    kind: str  # "manifest", "coco" or "upload"
    rows: int
    manifest: bytes = b""
    manifest_name: str = "manifest.csv"
    images: dict[str, bytes] = field(default_factory=dict)  # what the manifest's folder holds
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # for "upload"
    wheres: list[str] | None = None
    file_error: str = ""  # a file no row can be read from: the job fails with this
    # Only on a real file system: names no zip member or storage name can carry.
    folder_only: bool = False


def jpeg(seed: int) -> bytes:
    return image_bytes(seed=seed)


def lines(*rows: str) -> list[str]:
    return [f"line {n}" for n in rows]


def _csv(text: str, encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_with_raw_names(members: list[tuple[bytes, bytes, bool]]) -> bytes:
    """A zip whose member names are raw bytes, with or without the UTF-8 flag, as other tools
    write them (zipfile itself always writes valid names): written with placeholders of the same
    length, then patched in the local headers and the central directory."""
    buffer = io.BytesIO()
    placeholders = [
        str(index).rjust(len(raw), "q").encode() for index, (raw, _, _) in enumerate(members)
    ]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for placeholder, (_raw, data, _flag) in zip(placeholders, members, strict=True):
            archive.writestr(placeholder.decode(), data)
    blob = bytearray(buffer.getvalue())
    for (raw, _data, flag), placeholder in zip(members, placeholders, strict=True):
        for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
            at = 0
            while (at := blob.find(signature, at)) != -1:
                if blob[at + name_at : at + name_at + len(placeholder)] == placeholder:
                    blob[at + name_at : at + name_at + len(raw)] = raw
                    (bits,) = struct.unpack_from("<H", blob, at + flag_at)
                    bits = bits | 0x800 if flag else bits & ~0x800
                    struct.pack_into("<H", blob, at + flag_at, bits)
                at += 1
    return bytes(blob)


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("GPSPosition", "51.5007 N, 0.1246 W")
    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 30), (10, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def build() -> list[Case]:
    """Every case of issue 13, as a kind: each a small file a test can run end to end."""
    cases: list[Case] = []
    add = cases.append

    # 1. The same bytes under two names, one caption each; and again 120 rows apart.
    add(
        Case(
            "identical bytes under two names",
            "manifest",
            rows=2,
            manifest=_csv("image,caption\norig.jpg,a dog on grass\ncopy.jpg,a cat on a mat\n"),
            images={"orig.jpg": jpeg(1), "copy.jpg": jpeg(1)},
            wheres=lines(2, 3),
        )
    )
    far = ["image,caption", "orig.jpg,first caption"]
    far += [f"filler{n}.jpg,filler caption {n}" for n in range(120)]
    far += ["copy.jpg,second caption"]
    add(
        Case(
            "identical bytes 120 rows apart",
            "manifest",
            rows=122,
            manifest=_csv("\n".join(far) + "\n"),
            images={
                "orig.jpg": jpeg(2),
                "copy.jpg": jpeg(2),
                **{f"filler{n}.jpg": jpeg(1000 + n) for n in range(120)},
            },
        )
    )
    # 2. Stray and unterminated quotes.
    add(
        Case(
            "stray quote swallowing rows",
            "manifest",
            rows=4,
            manifest=_csv(
                'image,caption\nimp3.jpg,"a dog runs\nimp3.jpg,a cat\n'
                'imp4.jpg,"another "quoted" bad\nimp5.jpg,fine\n'
            ),
            images={"imp3.jpg": jpeg(3), "imp4.jpg": jpeg(4), "imp5.jpg": jpeg(5)},
            wheres=lines(2, 3, 4, 5),
        )
    )
    add(
        Case(
            "quote never closed",
            "manifest",
            rows=3,
            manifest=_csv('image,caption\na.jpg,fine\nb.jpg,"never closed\nc.jpg,also fine\n'),
            images={"a.jpg": jpeg(6), "b.jpg": jpeg(7), "c.jpg": jpeg(8)},
            wheres=lines(2, 3, 4),
        )
    )
    add(
        Case(
            "legitimate multi-line caption",
            "manifest",
            rows=2,
            manifest=_csv('image,caption\na.jpg,"first line\nsecond line"\nb.jpg,plain\n'),
            images={"a.jpg": jpeg(9), "b.jpg": jpeg(10)},
            wheres=lines(2, 4),
        )
    )
    # 3. Values PostgreSQL refuses or columns cannot hold, and unsafe URLs.
    add(
        Case(
            "NUL bytes, long values, bad URLs",
            "manifest",
            rows=10,
            manifest=_csv(
                "image,caption,license,source_url,license_url\n"
                "n1.jpg,a NUL\x00 in the caption,,,\n"
                "n2.jpg,fine,CC\x00BY,,\n"
                f"n3.jpg,fine,{'L' * 201},,\n"
                f"n4.jpg,fine,,http://example.org/{'u' * 1000},\n"
                "n5.jpg,fine,,javascript:alert(1),\n"
                'n6.jpg,fine,,,"data:text/html;base64,PHNjcmlwdD4="\n'
                "n7.jpg,fine,,//evil.example/x,\n"
                "n8.jpg,fine,CC BY,https://example.org/n8,https://creativecommons.org/licenses/by/4.0/\n"
                f"n9.jpg,{'x' * 200_000},,,\n"
                "n10.jpg,fine,,JaVaScRiPt:alert(1),\n"
            ),
            images={f"n{n}.jpg": jpeg(20 + n) for n in range(1, 11)},
            wheres=lines(*range(2, 12)),
        )
    )
    add(
        Case(
            "odd file names",
            "manifest",
            rows=8,
            manifest=_csv(
                "image,caption\n"
                "bad\x00name.jpg,NUL in the name\n"
                "bell\x07.jpg,control character\n"
                "../../etc/passwd,traversal\n"
                "/etc/hostname,absolute\n"
                f"{'n' * 300}.jpg,name too long\n"
                "missing.jpg,no such file\n"
                ",no image\n"
                "good.jpg,\n"
            ),
            images={"good.jpg": jpeg(40)},
            wheres=lines(*range(2, 10)),
        )
    )
    add(
        Case(
            "bad images and captions",
            "manifest",
            rows=7,
            manifest=_csv(
                "image,caption\n"
                "broken.jpg,damaged bytes\n"
                "anim.gif,a GIF\n"
                "big.png,too large\n"
                "empty.jpg,an empty file\n"
                "ok.jpg,   \n"
                "ok.jpg,a fine caption,extra,cells\n"
                "ok.jpg,a fine caption\n"
            ),
            images={
                "broken.jpg": b"\xff\xd8\xff\xe0 not really a jpeg",
                "anim.gif": image_bytes(fmt="GIF"),
                "big.png": b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES + 10),
                "empty.jpg": b"",
                "ok.jpg": jpeg(41),
            },
            wheres=lines(*range(2, 9)),
        )
    )
    # 4. Dialects and encodings.
    add(
        Case(
            "semicolon-separated",
            "manifest",
            rows=2,
            manifest=_csv("image;caption;license\nsa.jpg;un chien, noir;CC0\nsb.jpg;un chat;\n"),
            images={"sa.jpg": jpeg(50), "sb.jpg": jpeg(51)},
            wheres=lines(2, 3),
        )
    )
    add(
        Case(
            "tab-separated with a BOM",
            "manifest",
            rows=2,
            manifest=b"\xef\xbb\xbf"
            + _csv("image\tcaption\nta.jpg\ta dog, a cat\ntb.jpg\tplain\n"),
            manifest_name="manifest.tsv",
            images={"ta.jpg": jpeg(52), "tb.jpg": jpeg(53)},
        )
    )
    add(
        Case(
            "UTF-16 with its BOM",
            "manifest",
            rows=2,
            manifest=_csv("image,caption\nua.jpg,große Straße\nub.jpg,日本語\n", "utf-16"),
            images={"ua.jpg": jpeg(54), "ub.jpg": jpeg(55)},
        )
    )
    add(
        Case(
            "Windows-1252 from Excel",
            "manifest",
            rows=3,
            manifest=_csv(
                "image,caption\nwa.jpg,Ein Mädchen läuft über die Straße\n"
                "wb.jpg,une fête à côté du café\nwc.jpg,plain text\n",
                "cp1252",
            ),
            images={"wa.jpg": jpeg(56), "wb.jpg": jpeg(57), "wc.jpg": jpeg(58)},
        )
    )
    add(
        Case(
            "UTF-8 with one latin-1 line",
            "manifest",
            rows=3,
            manifest=_csv("image,caption\nla.jpg,un café\n")
            + "lb.jpg,crème brûlée\n".encode("latin-1")
            + _csv("lc.jpg,fine\n"),
            images={"la.jpg": jpeg(59), "lb.jpg": jpeg(60), "lc.jpg": jpeg(61)},
            wheres=lines(2, 3, 4),
        )
    )
    add(
        Case(
            "NFC name, NFD file",
            "manifest",
            rows=1,
            manifest=_csv("image,caption\ncaf\u00e9.jpg,a caf\u00e9\n"),
            images={"cafe\u0301.jpg": jpeg(62)},
        )
    )
    add(
        Case(
            "blank lines and a repeated caption",
            "manifest",
            rows=3,
            manifest=_csv(
                "\nimage,caption\n\nra.jpg,same words\n\nra.jpg,same words\nrb.jpg,x\n\n"
            ),
            images={"ra.jpg": jpeg(63), "rb.jpg": jpeg(64)},
            wheres=lines(4, 6, 7),
        )
    )
    add(
        Case(
            "header without the required columns",
            "manifest",
            rows=0,
            manifest=_csv("file,text\na.jpg,hello\n"),
            file_error="Missing required column(s): image, caption.",
        )
    )
    # JSONL.
    add(
        Case(
            "JSONL of every odd kind",
            "manifest",
            rows=10,
            manifest_name="manifest.jsonl",
            manifest=b"\n".join(
                [
                    b'{"image": "ja.jpg", "caption": "fine"}',
                    '{"image": "jb.jpg", "caption": "caf\u00e9 cr\u00e8me"}'.encode("latin-1"),
                    b'{"image": ["jc.jpg"], "caption": "an id given as a list"}',
                    b"[" * 100_000 + b"]" * 100_000,
                    b'"just a string"',
                    b'{"image": "jd.jpg", "caption": "NUL \\u0000 escaped"}',
                    b'{"image": "je.jpg", "caption": "lone \\ud800 surrogate"}',
                    b'{"image": "jf.jpg", "caption": 42}',
                    b"{broken json",
                    b'{"image": "ja.jpg", "caption": "second caption", "source_url": "ftp://x/y"}',
                ]
            )
            + b"\n",
            images={f"j{c}.jpg": jpeg(70 + i) for i, c in enumerate("abcdef")},
            wheres=lines(*range(1, 11)),
        )
    )
    # COCO.
    coco = {
        "licenses": [
            {"id": 1, "name": "Attribution License", "url": "http://creativecommons.org/by/2.0/"},
            {"id": 2, "name": "Bad", "url": "javascript:alert(document.cookie)"},
            {"id": 3, "name": "NUL\u0000licence", "url": "http://example.org/"},
        ],
        "images": [
            {"id": 1, "file_name": "c1.jpg", "license": 1, "flickr_url": "http://f/1"},
            {"id": 2, "file_name": "c2.jpg", "license": 1, "coco_url": "http://c/2"},
            {"id": 2, "file_name": "c2-again.jpg"},
            {"id": [3], "file_name": "c3.jpg"},
            {"id": True, "file_name": "c4.jpg"},
            {"id": 5, "file_name": "c5.jpg", "coco_url": "javascript:alert(1)"},
            {"id": 6, "file_name": "c6.jpg", "license": 2},
            {"id": 7, "file_name": "c7.jpg", "license": 3},
            {"id": 8, "file_name": "c8-same-bytes-as-c1.jpg"},
            {"id": 9, "file_name": "missing.jpg"},
            {"id": 10, "file_name": "bad\u0000.jpg"},
            "not an object",
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "caption": "one"},
            {"id": 12, "image_id": 2, "caption": "two"},
            {"id": 13, "image_id": 8, "caption": "merged into one"},
            {"id": 14, "image_id": 9, "caption": "its image is missing"},
            {"id": 15, "image_id": 99, "caption": "unknown image"},
            {"id": 16, "image_id": 1},
            {"id": 17, "image_id": "1", "caption": "id as text"},
            {"id": 18, "image_id": 1, "caption": "NUL\u0000"},
            {"id": 19, "image_id": 5, "caption": "its image was refused"},
        ],
    }
    add(
        Case(
            "COCO of every odd kind",
            "coco",
            rows=len(coco["images"]) + len(coco["annotations"]),
            manifest=json.dumps(coco).encode(),
            manifest_name="captions.json",
            images={
                "c1.jpg": jpeg(80),
                "c2.jpg": jpeg(81),
                "c2-again.jpg": jpeg(82),
                "c5.jpg": jpeg(85),
                "c6.jpg": jpeg(86),
                "c7.jpg": jpeg(87),
                "c8-same-bytes-as-c1.jpg": jpeg(80),
            },
        )
    )
    add(
        Case(
            "COCO nested 100,000 deep",
            "coco",
            rows=0,
            manifest=b"[" * 100_000 + b"]" * 100_000,
            manifest_name="captions.json",
            file_error="nested too deeply",
        )
    )
    add(
        Case(
            "COCO with latin-1 bytes in a caption",
            "coco",
            rows=3,
            manifest=(
                b'{"images": [{"id": 1, "file_name": "l1.jpg"}], "annotations": ['
                b'{"id": 1, "image_id": 1, "caption": "caf\xe9"}, '
                b'{"id": 2, "image_id": 1, "caption": "fine"}]}'
            ),
            manifest_name="captions.json",
            images={"l1.jpg": jpeg(90)},
        )
    )
    # 5. Uploads: zips and files.
    members = [
        ("photos/a.jpg", jpeg(100)),
        ("photos/a-copy.jpg", jpeg(100)),
        ("photos/notes.txt", b"hello"),
        ("../evil.jpg", jpeg(101)),
        ("photos/big.png", b"\x89PNG" + bytes(MAX_IMAGE_BYTES + 5)),
        ("photos/zeros.jpg", bytes(50 * 2**20)),  # 50 MB of zeros: a few KB compressed
        ("__MACOSX/photos/._a.jpg", b"junk"),
        ("photos/", b""),
        ("photos/text.png", png_with_text()),
    ]
    add(
        Case(
            "zip with good, duplicate, hostile and oversized members",
            "upload",
            rows=7,
            uploads=[("photos.zip", zip_of(members))],
        )
    )
    add(
        Case(
            "zip names: bad UTF-8 flag, unflagged UTF-8, cp437",
            "upload",
            rows=4,
            uploads=[
                (
                    "names.zip",
                    zip_with_raw_names(
                        [
                            (b"ok.jpg", jpeg(110), False),
                            (b"bad\xff\xfe.jpg", jpeg(111), True),
                            ("caf\u00e9.jpg".encode(), jpeg(112), False),
                            ("na\u00efve.jpg".encode("cp437"), jpeg(113), False),
                        ]
                    ),
                )
            ],
        )
    )
    add(
        Case(
            "too many files, not a zip, empty and plain files",
            "upload",
            rows=5,
            uploads=[
                ("many.zip", zip_of([(f"{n}.jpg", b"x") for n in range(ZIP_MAX_FILES + 1)])),
                ("fake.zip", b"PK\x03\x04 this is no zip"),
                ("empty.jpg", b""),
                ("plain.png", image_bytes(fmt="PNG", seed=120)),
                ("anim.gif", image_bytes(fmt="GIF")),
            ],
            wheres=["many.zip", "fake.zip", "empty.jpg", "plain.png", "anim.gif"],
        )
    )
    return cases


def run_case(case: Case, *, runner: str, project, user, folder):
    """Run a case through the real services as a worker (``storage``: inputs uploaded, images as
    a zip) or the terminal command (``terminal``: images in ``folder``) would; the job, re-read."""
    from django.core.files.base import ContentFile

    from datasets.ingest.services.jobs import (
        import_job_create,
        import_job_run,
        terminal_import_create,
        upload_job_create,
    )
    from datasets.models import Source

    if case.kind == "upload":
        job = upload_job_create(
            project=project,
            files=[ContentFile(data, name=name) for name, data in case.uploads],
            source=Source.API,
            created_by=user,
        )
        return import_job_run(job_id=job.pk)
    if runner == "storage":
        images = zip_of(list(case.images.items()))
        job = import_job_create(
            project=project,
            kind=case.kind,
            manifest=ContentFile(case.manifest, name=case.manifest_name),
            images=[ContentFile(images, name="images.zip")] if case.images else [],
            created_by=user,
        )
        return import_job_run(job_id=job.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in case.images.items():
        (folder / name).write_bytes(data)
    source_file = folder.parent / case.manifest_name
    source_file.write_bytes(case.manifest)
    job = terminal_import_create(
        project=project, kind=case.kind, source_file=source_file, images_dir=folder
    )
    return import_job_run(job_id=job.pk, images_dir=folder)
