"""`speechkit lips VIDEO... --out DIR`: the mouth crops of each video, to check by eye."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from speechkit.errors import SpeechkitError
from speechkit.terminal import safe

log = logging.getLogger("speechkit")
out = Console()
err = Console(stderr=True)


def lips(
    videos: Annotated[list[Path], typer.Argument(help="Video files.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the crop videos and "
                                          "contact sheets.", show_default=False)],
    backend: Annotated[str, typer.Option(help="Face-landmark backend: dlib or mediapipe.")] = "dlib",
    cache: Annotated[bool, typer.Option(help="Reuse and keep crops in the speechkit cache.")] = True,
) -> None:
    """Write each video's mouth crops as NAME.mp4 (96x96, 25 fps, with its sound) and a contact
    sheet NAME.png (frames without a face, filled from their neighbours, framed in red).

    Exit code 0 when every video gave crops, 1 when some did not (each says why).
    """
    from speechkit.formats import output_stems
    from speechkit.media.ffmpeg import display_name
    from speechkit.media.lips import cached_crops, load_backend
    from speechkit.media.lips.review import remove_stale_partials, write_contact_sheet, write_crop_video

    load_backend(backend)  # a missing backend is a usage error: say so before any work
    _make_out_dir(out_dir)
    remove_stale_partials(out_dir)
    stems = output_stems((str(v), str(v)) for v in videos)
    failed = 0
    for video in videos:
        name = display_name(video)
        try:
            crops = cached_crops(video, backend=backend, cache=cache)
            if not crops.has_face.any():
                raise SpeechkitError(f"{name}: no face found in any of its {len(crops.crops)} "
                                     "video frames; nothing to crop")
            stem = stems[str(video)]
            mp4 = write_crop_video(crops.crops, out_dir / f"{stem}.mp4", sound=video)
            png = write_contact_sheet(crops, out_dir / f"{stem}.png")
        except SpeechkitError as e:
            failed += 1
            err.print(f"[red]error:[/] {safe(display_name(str(e)))}", highlight=False, soft_wrap=True)
            continue
        except Exception as e:  # one video's surprise never stops the others
            log.debug("lips failed on %s", name, exc_info=True)
            failed += 1
            err.print(f"[red]error:[/] {safe(name)}: unexpected {type(e).__name__}: "
                      f"{safe(display_name(str(e)))} (rerun with --debug for the traceback)",
                      highlight=False, soft_wrap=True)
            continue
        n, faces = len(crops.crops), int(crops.has_face.sum())
        out.print(f"{safe(name)}: {n} frames, a face in {faces} -> {safe(display_name(mp4))}, "
                  f"{safe(display_name(png.name))}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if failed == 0 else 1)


def _make_out_dir(out_dir: Path) -> None:
    """--out as a folder to write into, or a one-line error naming the problem and the fix."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SpeechkitError(f"--out {out_dir} is a file; pass a folder for the crop videos and "
                             "contact sheets")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpeechkitError(f"--out {out_dir}: cannot create this folder ({e.strerror}); pass a "
                             "folder you can write to") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise SpeechkitError(f"--out {out_dir}: this folder is not writable; pass a folder you "
                             "can write to")


def register(app: typer.Typer) -> None:
    app.command()(lips)
