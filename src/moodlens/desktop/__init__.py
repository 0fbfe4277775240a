"""The desktop app (extra ``desktop``: PySide6): a window with the annotated camera or video, a
panel of each face's scores, a live chart of the emotion mix, pause, snapshots and a per-second
timeline recorded to CSV.

    from moodlens.desktop.app import main
    main("lesson.mp4")        # or main("0") for camera 0; the same as `moodlens desktop lesson.mp4`

Modules: ``app`` (entry point and display check), ``window`` (the main window), ``worker``
(recognition on a QThread), ``widgets`` (video view, faces panel, mood chart). Importing this
package does not import Qt; its modules do.
"""

__all__: list[str] = []
