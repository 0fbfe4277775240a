"""The teacher's upload routes: ``/api/analyze`` (one image, answered at once) and
``/api/videos`` (a video analysed in the background, polled for progress). The checks and the
video jobs themselves are in :mod:`~moodlens.web.uploads`; the app's ``BodyLimit`` middleware
refuses anonymous and oversized uploads before these routes read them."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from moodlens.store import safe_text
from moodlens.web import uploads
from moodlens.web.deps import State, teacher
from moodlens.web.state import MoodLens
from moodlens.web.uploads import UploadError, VideoJob, video_type

router = APIRouter(dependencies=[Depends(teacher)])


@router.post("/api/analyze")
async def analyze(ml: State, file: Annotated[UploadFile, File()]) -> dict:
    data = await file.read(ml.limits.image_bytes + 1)
    return await asyncio.get_running_loop().run_in_executor(ml.pool, uploads.analyze_image, ml.recognizer, data,
                                                            ml.limits)


@router.post("/api/videos", status_code=202)
async def upload_video(ml: State, file: Annotated[UploadFile, File()]) -> dict:
    ml.videos.check_capacity()
    video_type(await file.read(16))
    await file.seek(0)
    return {"job": (await save_video(ml, file)).to_dict()}


async def save_video(ml: MoodLens, file: UploadFile) -> VideoJob:
    """Copy an uploaded video to the uploads folder and queue it (the job deletes the copy when
    done; a refused or failed upload is deleted here)."""
    suffix = Path(file.filename or "").suffix.lower()
    ml.uploads.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="moodlens-", suffix=suffix if re.fullmatch(r"\.\w{1,5}", suffix) else "",
                                dir=ml.uploads)
    try:
        with os.fdopen(fd, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, file.file, out, 2**20)
        if Path(name).stat().st_size > ml.limits.video_bytes:
            raise UploadError(413, f"video larger than {ml.limits.video_bytes // 2**20} MB")
        return await run_in_threadpool(ml.videos.submit, Path(name), safe_text(file.filename or "", 120) or "video")
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


@router.get("/api/videos/{job_id}")
async def video_job(ml: State, job_id: str) -> dict:
    job = ml.videos.get(job_id)
    if job is None:
        raise HTTPException(404, f"no video job {job_id}")
    return {"job": job.to_dict(frames=job.status == "done")}
