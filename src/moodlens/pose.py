"""Where a head points, from the detector's five landmarks: yaw, pitch and roll in degrees.

Convention, kept everywhere in MoodLens (JSON, the database, the browser, the annotator):

- ``yaw`` > 0: the face turns to its own left (towards the right of an unmirrored image);
- ``pitch`` > 0: the face tilts up; looking down at a desk is negative;
- ``roll`` > 0: the head leans towards its own left shoulder (clockwise in the image).

Mirroring the image negates yaw and roll and keeps pitch.

The five points (the two eyes, the nose tip, the two mouth corners) are fitted by
``cv2.solvePnP`` to a generic adult face (:data:`FACE_MODEL`, millimetres, from average
anthropometric proportions). The camera is a pinhole with the focal length guessed as the frame's
width (a webcam's field of view of about 53 degrees) and its centre put on the face itself: the
angles are the head's direction relative to the line from the face to the camera, which is what
"facing the screen" means for a webcam just above it, and a gallery tile's face at the edge of a
big frame is not read as turned. Five points constrain pitch weakly (they are nearly planar), so
pitch is the least exact angle; the confidence falls with how badly the generic face fits the
points, and the pose is None where the points cannot support one (a detector without landmarks,
points squeezed together as in a profile view).

:data:`POSE_CONSTANTS` is everything the browser needs to compute the same pose from the same
landmarks; ``/api/browser`` serves it.
"""

from __future__ import annotations

import cv2
import numpy as np

from moodlens.faces import Pose

# Camera frame (x right, y down, z away from the camera) for a face looking straight at it, in
# millimetres, origin at the nose tip; rows in the detectors' landmark order: the eye on the
# image's left, the eye on its right, the nose tip, the mouth corner on the left, on the right.
# Eyes 63 mm apart (the mean interpupillary distance); heights and the mouth's width in the
# proportions of the median detected face of 390 FER2013 Training faces (eyes 0.537 of their
# distance above the nose tip, mouth corners 0.486 below it and 0.842 apart: scripts/pose_check.py
# --proportions); depths behind the nose tip from anthropometry (eyes 30 mm, mouth corners 22 mm).
FACE_MODEL = np.array([[-31.5, -33.8, 30.0], [31.5, -33.8, 30.0], [0.0, 0.0, 0.0],
                       [-26.5, 30.6, 22.0], [26.5, 30.6, 22.0]])
# Focal length as a multiple of the frame's width.
FOCAL_PER_WIDTH = 1.0
# Reprojection error (RMS, as a share of the distance between the eyes) at which the confidence
# falls to 1/e: the generic face does not fit these points.
ERROR_SCALE = 0.15
# The distance between the eyes, as a share of the eyes-to-mouth distance, below which the points
# cannot be fitted: a near-profile view squeezes the eyes together.
MIN_EYE_RATIO = 0.25
# Pixels: eyes closer together, or a mouth this close to the eyes, are no face to fit.
MIN_EYES, MIN_EYES_TO_MOUTH = 2.0, 1.0

POSE_CONSTANTS = {"face_model": FACE_MODEL.tolist(), "focal_per_width": FOCAL_PER_WIDTH,
                  "error_scale": ERROR_SCALE, "min_eye_ratio": MIN_EYE_RATIO,
                  "min_eyes": MIN_EYES, "min_eyes_to_mouth": MIN_EYES_TO_MOUTH}


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The model-to-camera rotation matrix of a pose in degrees; the inverse of :func:`angles`."""
    def turn(axis: int, degrees: float) -> np.ndarray:
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m
    # yaw about the image's vertical, then pitch about the face's horizontal, then roll about its
    # forward axis; the signs make each angle positive in the module's convention
    return turn(1, yaw) @ turn(0, -pitch) @ turn(2, roll)


def project(yaw: float, pitch: float, roll: float, centre: tuple[float, float], frame_width: int,
            distance: float = 600.0) -> np.ndarray:
    """The (5, 2) landmarks of the generic face at ``distance`` mm with this pose, their centre at
    pixel ``centre`` of a frame ``frame_width`` wide: what a detector would report for it (for
    the synthetic checks and simulations)."""
    points = FACE_MODEL @ rotation(yaw, pitch, roll).T + [0.0, 0.0, distance]
    uv = points[:, :2] / points[:, 2:] * FOCAL_PER_WIDTH * frame_width
    return uv - uv.mean(0) + np.asarray(centre, float)


def angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees of a model-to-camera rotation matrix."""
    forward = rotation @ np.array([0.0, 0.0, -1.0])  # where the face points: towards the camera when frontal
    up = rotation @ np.array([0.0, -1.0, 0.0])
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(-forward[1], np.hypot(forward[0], forward[2])))
    # Roll about the face's own forward axis: the angle of its up vector against the up of a
    # face with the same yaw and pitch and no roll.
    own_left = np.cross(np.array([0.0, -1.0, 0.0]), forward)  # the image's right for a frontal face
    own_left /= np.linalg.norm(own_left)
    level_up = np.cross(forward, own_left)
    roll = np.degrees(np.arctan2(float(up @ own_left), float(up @ level_up)))
    return float(yaw), float(pitch), float(roll)


def estimate_pose(landmarks: np.ndarray | None, frame_width: int) -> Pose | None:
    """The pose of a face from its (5, 2) landmarks in pixels of a frame ``frame_width`` wide,
    or None when the landmarks cannot support one."""
    if landmarks is None or np.shape(landmarks) != (5, 2) or not np.isfinite(landmarks).all():
        return None
    points = np.asarray(landmarks, np.float64)
    eyes = np.linalg.norm(points[1] - points[0])
    eyes_to_mouth = np.linalg.norm((points[3] + points[4]) / 2 - (points[0] + points[1]) / 2)
    if eyes < MIN_EYES or eyes_to_mouth < MIN_EYES_TO_MOUTH or eyes < MIN_EYE_RATIO * eyes_to_mouth:
        return None
    centre = points.mean(0)
    focal = FOCAL_PER_WIDTH * max(frame_width, 1)
    camera = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
    # Start from a frontal face at the distance its eye spacing implies, and refine: the
    # iterative solver then settles on the pose nearest to facing the camera, the right one of
    # the two mirror solutions that nearly planar points allow.
    start_r = np.zeros((3, 1))
    start_t = np.array([[0.0], [0.0], [focal * (FACE_MODEL[1, 0] - FACE_MODEL[0, 0]) / eyes]])
    ok, rvec, tvec = cv2.solvePnP(FACE_MODEL, points, camera, None, start_r.copy(), start_t.copy(),
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return None
    projected, _ = cv2.projectPoints(FACE_MODEL, rvec, tvec, camera, None)
    error = float(np.sqrt(np.mean(np.sum((projected.reshape(5, 2) - points) ** 2, axis=1)))) / eyes
    yaw, pitch, roll = angles(cv2.Rodrigues(rvec)[0])
    return Pose(yaw, pitch, roll, float(np.exp(-error / ERROR_SCALE)))
