"""The desktop app (extra ``desktop``: PySide6): a window with the annotated camera or video (each
head's direction drawn from its nose), a panel of each face's scores, a live chart of the emotion
mix and of the share of faces facing the screen, how many face it now in the status bar, pause,
snapshots and a per-second timeline recorded to CSV.

    from moodlens.desktop.app import main
    main("lesson.mp4")        # or main("0") for camera 0; the same as `moodlens desktop lesson.mp4`

Modules: ``app`` (entry point and display check), ``window`` (the main window), ``worker``
(recognition on a QThread), ``widgets`` (video view, faces panel, mood and attention chart).
Importing this package does not import Qt; its modules do.
"""

__all__: list[str] = []
